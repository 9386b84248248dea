"""The consumers the benchmark compares, one module each."""
