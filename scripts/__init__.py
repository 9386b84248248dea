"""Developer and CI scripts."""
