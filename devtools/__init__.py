"""Development and test launchers: `make dev`, the native emulators and a throwaway PostgreSQL.

Nothing here ships in the image; the programs never import it.
"""
