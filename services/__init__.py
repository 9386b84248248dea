"""The order services (one package each), run by `python -m services NAME`."""
