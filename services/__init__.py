"""Order services and the consumer runtime they share."""
