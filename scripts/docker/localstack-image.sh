#!/usr/bin/env bash
# Build pubsub-supervisor/localstack:4.14.0-native, the stand-in for
# localstack/localstack:4.14.0 (localstack/Dockerfile.native), on the local base image.
# Safe to run again: the image is rebuilt only when its inputs (Dockerfile, entrypoint,
# lock file, base image) changed, which a label on the image records.
#
# Environment: BASE_IMAGE (default pubsub-supervisor/base:trixie, from base-image.sh; any
# Debian-based image with python3 >= 3.12 and venv works, e.g. python:3.13-slim),
# LOCALSTACK_IMAGE (tag to build).
set -Eeuo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONTEXT=$REPO_ROOT/localstack
LOCAL_BASE_IMAGE=pubsub-supervisor/base:trixie
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE_IMAGE}
LOCALSTACK_IMAGE=${LOCALSTACK_IMAGE:-pubsub-supervisor/localstack:4.14.0-native}
INPUTS_LABEL=org.pubsub-supervisor.inputs

# One digest over everything the image is made from.
inputs_digest() {
  local base_id
  base_id=$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || echo "$BASE_IMAGE")
  {
    echo "$base_id"
    cd "$CONTEXT" && sha256sum Dockerfile.native docker-entrypoint.sh awslocal requirements-native.lock
  } | sha256sum | cut -c1-16
}

built_digest() {
  docker image inspect --format "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" "$LOCALSTACK_IMAGE" 2>/dev/null || true
}

main() {
  require_docker
  local digest
  digest=$(inputs_digest)
  if [[ $(built_digest) == "$digest" ]]; then
    log "$LOCALSTACK_IMAGE is up to date; nothing to do"
    return 0
  fi
  if ! image_exists "$BASE_IMAGE"; then
    # The local base image exists on no registry: asking one for it would only fail later.
    [[ $BASE_IMAGE != "$LOCAL_BASE_IMAGE" ]] \
      || die "$BASE_IMAGE is missing: run scripts/docker/base-image.sh first (or scripts/docker/prepare.sh)."
    log "$BASE_IMAGE is not here; docker build will pull it"
  fi

  local start build_log
  start=$(now)
  build_log=$(mktemp "${TMPDIR:-/tmp}/pubsub-localstack-build.XXXXXX")
  log "building $LOCALSTACK_IMAGE from $BASE_IMAGE (log: $build_log)"
  # Host networking: the build downloads the pinned packages from PyPI with the
  # machine's own network and CA setup.
  if ! docker build --network host \
    --file "$CONTEXT/Dockerfile.native" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --label "$INPUTS_LABEL=$digest" \
    --tag "$LOCALSTACK_IMAGE" \
    "$CONTEXT" 2>&1 | tee "$build_log" | { grep --line-buffered -E '^Step [0-9]+/[0-9]+ : (FROM|RUN|COPY)' >&2 || true; }; then
    tail -n 30 "$build_log" >&2
    die "docker build failed (last lines above, full log: $build_log): if the base image is missing run scripts/docker/base-image.sh; if pip could not download, check that PyPI is reachable from this machine."
  fi
  rm -f "$build_log"
  log "built $LOCALSTACK_IMAGE in $(($(now) - start)) s"
}

exec 9>"${TMPDIR:-/tmp}/pubsub-docker-localstack-image.lock"
flock -w 900 9 || die "another localstack-image.sh has held the build lock for 15 minutes: check what it is doing."
main "$@"
