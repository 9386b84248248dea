#!/usr/bin/env bash
# The consumer drain benchmark on small queues: every contender must drain its queue
# (a timeout is reported, not failed; a lost or left-over message fails the step).
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
make bench-quick
