#!/usr/bin/env bash
# Build the app image (Dockerfile.supervisor) on the local base image, with the host's
# network for its package downloads, so that `docker compose up --build` afterwards finds
# every layer in the cache and needs no network of its own.
# Safe to run again: docker's layer cache makes a second run take a few seconds.
#
# Environment: BASE_IMAGE (default pubsub-supervisor/base:trixie, from base-image.sh),
# APP_IMAGE (tag to build; default: one per checkout, as `make up` names it).
set -Eeuo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BASE_IMAGE=${BASE_IMAGE:-pubsub-supervisor/base:trixie}
APP_IMAGE=${APP_IMAGE:-$(checkout_app_image "$REPO_ROOT")}

main() {
  require_docker
  image_exists "$BASE_IMAGE" \
    || die "$BASE_IMAGE is missing: run scripts/docker/prepare.sh first (or set BASE_IMAGE to an image this engine has)."
  local start build_log
  start=$(now)
  build_log=$(mktemp "${TMPDIR:-/tmp}/pubsub-app-build.XXXXXX")
  log "building $APP_IMAGE from $BASE_IMAGE (log: $build_log)"
  if ! docker build --network host --force-rm \
    --file "$REPO_ROOT/Dockerfile.supervisor" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --tag "$APP_IMAGE" \
    "$REPO_ROOT" >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    die "docker build failed (last lines above, full log: $build_log): if pip or apt could not download, check that PyPI and the Debian mirror are reachable from this machine."
  fi
  rm -f "$build_log"
  log "built $APP_IMAGE ($(docker image inspect --format '{{.Size}}' "$APP_IMAGE" | awk '{printf "%d MB", $1/1e6}')) in $(($(now) - start)) s"
}

exec 9>"${TMPDIR:-/tmp}/pubsub-docker-app-image.lock"
flock -w 900 9 || die "another app-image.sh has held the build lock for 15 minutes: check what it is doing."
main "$@"
