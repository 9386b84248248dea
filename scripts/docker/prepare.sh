#!/usr/bin/env bash
# Everything the Docker tiers need on a machine without registry access, in order: a
# running engine with compose, the local base image, and the LocalStack stand-in image.
# Each step skips what is already done, so a second run takes about a second.
set -Eeuo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

here=$(dirname "${BASH_SOURCE[0]}")
start=$(now)
for step in engine base-image localstack-image; do
  step_start=$(now)
  "$here/$step.sh" || die "step $step.sh failed (its message is above): fix that, then run $0 again."
  log "$step done ($(($(now) - step_start)) s)"
done
log "Docker prerequisites ready in $(($(now) - start)) s"
