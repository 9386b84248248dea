#!/usr/bin/env bash
# The integration suite again, on a LocalStack container started by testcontainers instead
# of the native emulator (the compose tests, marked docker, already ran in `make test`).
# test_emulator.py is about the native launcher itself, which this switch does not change.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."

TEST_EMULATOR=testcontainers .venv/bin/pytest tests/integration -m "not docker" \
  --ignore=tests/integration/test_emulator.py
