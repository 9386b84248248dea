#!/usr/bin/env bash
# Everything the Docker tiers need on a machine without registry access, in order: a
# running engine with compose, the local base image, the LocalStack stand-in image, and
# the PostgreSQL image of the scale-out compose override.
# Each step skips what is already done, so a second run takes about a second.
# Installing packages and starting dockerd need root; an engine that already answers (and
# images that already exist) need nothing more. The engine keeps running afterwards:
# `scripts/docker/engine.sh stop` stops it.
set -Eeuo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

here=$(dirname "${BASH_SOURCE[0]}")
if [[ $(id -u) -ne 0 ]] && ! docker info >/dev/null 2>&1; then
  die "no Docker engine answers, and starting one (and installing docker.io, docker-compose, debootstrap) needs root: run 'sudo bash $0', or start a Docker engine yourself and run $0 again."
fi
start=$(now)
for step in engine base-image localstack-image postgres-image; do
  step_start=$(now)
  "$here/$step.sh" || die "step $step.sh failed (its message is above): fix that, then run $0 again."
  log "$step done ($(($(now) - step_start)) s)"
done
log "Docker prerequisites ready in $(($(now) - start)) s"
"$here/engine.sh" status || true
