"""Performance benchmark: consumer drain, end to end, footprint and scale-out, one package each."""
