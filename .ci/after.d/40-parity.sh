#!/usr/bin/env bash
# Emulator parity: the integration suite again, on moto's server mode and on MiniStack
# instead of LocalStack. Neither runs the project's init hooks, so the fixture provisions
# them with apply_topology (as `pubsub provision` does on AWS). Tests that start their own
# LocalStack (launcher, `make dev`) are skipped there: see tests/support/fixtures.py.
# Differences between the emulators: docs/emulator-parity.md.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
make venv ministack-venv
for emulator in moto ministack; do
  echo ">> integration suite on TEST_EMULATOR=$emulator"
  TEST_EMULATOR=$emulator .venv/bin/pytest tests/integration -p no:cacheprovider
done
