#!/usr/bin/env bash
# Emulator parity: the integration suite again, on moto's server mode instead of LocalStack.
# moto runs no init hooks, so the fixture provisions it with apply_topology (as
# `pubsub provision` does on AWS). test_emulator.py tests the LocalStack launcher itself
# and is not repeated. Differences found between the emulators: docs/emulator-parity.md.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
make venv
TEST_EMULATOR=moto .venv/bin/pytest tests/integration \
  --ignore=tests/integration/test_emulator.py -p no:cacheprovider
