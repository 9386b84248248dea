#!/usr/bin/env bash
# Every part of the benchmark with small counts: the consumer drain (every contender must
# drain its queue), the whole stack end to end (the lowest rate must be kept up, no order
# may end failed, the relay must publish its backlog), the footprint and `make dev`'s
# start-up. Timeouts and saturation are reported, not failed; rates are not judged (the
# machine may be shared), the targets table is printed for the record.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
make bench-quick
