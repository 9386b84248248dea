#!/usr/bin/env bash
# The integration suite again, on a LocalStack container started by testcontainers instead
# of the native emulator (the compose tests, marked docker, already ran in `make test`;
# tests that start their own native LocalStack skip themselves on this emulator).
set -Eeuo pipefail
cd "$(dirname "$0")/../.."

TEST_EMULATOR=testcontainers .venv/bin/pytest tests/integration -m "not docker" -p no:cacheprovider
