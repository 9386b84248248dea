"""The integration tier uses the session fixtures of tests/support/fixtures.py
(emulator -> stack_env -> stack -> api), loaded for every tier by tests/conftest.py."""
