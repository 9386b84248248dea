"""The analytics service: running aggregates of the orders placed, each counted once."""
