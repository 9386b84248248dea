"""Scale-out: order throughput on PostgreSQL with 1, 2, ... instances of every service."""
