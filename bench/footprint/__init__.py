"""Footprint: memory and CPU of every program idle and under load, and `make dev` start-up."""
