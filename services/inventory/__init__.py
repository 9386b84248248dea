"""The inventory service: reserves stock for each order, all or nothing, once."""
