#!/usr/bin/env bash
# Build pubsub-supervisor/postgres:trixie, PostgreSQL from Debian's package
# (postgres/Dockerfile.local), on the local base image: the database of the scale-out
# compose override (`pubsub compose-scale`) where the upstream `postgres` image cannot be
# pulled. apt installs it from the mirror the base image's sources name (base-image.sh
# writes this machine's own), over the host's network.
# Safe to run again: the image is rebuilt only when its inputs (Dockerfile, entrypoint,
# base image) changed, which a label on the image records.
#
# Environment: BASE_IMAGE (default pubsub-supervisor/base:trixie, from base-image.sh; any
# Debian-based image works, e.g. python:3.13-slim), POSTGRES_IMAGE (tag to build).
set -Eeuo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONTEXT=$REPO_ROOT/postgres
LOCAL_BASE_IMAGE=pubsub-supervisor/base:trixie
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE_IMAGE}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-pubsub-supervisor/postgres:trixie}
INPUTS_LABEL=org.pubsub-supervisor.inputs

# One digest over everything the image is made from.
inputs_digest() {
  local base_id
  base_id=$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || echo "$BASE_IMAGE")
  {
    echo "$base_id"
    cd "$CONTEXT" && sha256sum Dockerfile.local docker-entrypoint.sh
  } | sha256sum | cut -c1-16
}

built_digest() {
  docker image inspect --format "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" "$POSTGRES_IMAGE" 2>/dev/null || true
}

main() {
  require_docker
  local digest
  digest=$(inputs_digest)
  if [[ $(built_digest) == "$digest" ]]; then
    log "$POSTGRES_IMAGE is up to date; nothing to do"
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
  build_log=$(mktemp "${TMPDIR:-/tmp}/pubsub-postgres-build.XXXXXX")
  log "building $POSTGRES_IMAGE from $BASE_IMAGE (log: $build_log)"
  # Host networking: apt downloads the package with the machine's own network and CA setup.
  if ! docker build --network host --force-rm \
    --file "$CONTEXT/Dockerfile.local" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --label "$INPUTS_LABEL=$digest" \
    --tag "$POSTGRES_IMAGE" \
    "$CONTEXT" >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    die "docker build failed (last lines above, full log: $build_log): if the base image is missing run scripts/docker/base-image.sh; if apt could not download, check that the Debian mirror in the base image's apt sources is reachable from this machine."
  fi
  rm -f "$build_log"
  log "built $POSTGRES_IMAGE ($(docker run --rm --entrypoint postgres "$POSTGRES_IMAGE" --version)) in $(($(now) - start)) s"
}

exec 9>"${TMPDIR:-/tmp}/pubsub-docker-postgres-image.lock"
flock -w 900 9 || die "another postgres-image.sh has held the build lock for 15 minutes: check what it is doing."
main "$@"
