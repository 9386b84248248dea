#!/usr/bin/env bash
# Look for secrets in an image's filesystem with scripts/scan-secrets, and check that no
# .env file, tests or git metadata went into it.
#   scripts/docker/scan-image.sh [IMAGE]   (default: $APP_IMAGE, else the checkout's image, as app-image.sh names it)
# site-packages is skipped: the locked third-party packages ship AWS documentation examples
# (example account ids and keys); what they are is pinned by uv.lock and audited there.
set -Eeuo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IMAGE=${1:-${APP_IMAGE:-$(checkout_app_image "$REPO_ROOT")}}

main() {
  require_docker
  image_exists "$IMAGE" || die "$IMAGE is not in the local engine: build it first (scripts/docker/app-image.sh)."
  local rootfs container
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/pubsub-image-scan.XXXXXX")
  # Expanded now on purpose: $rootfs is local to this function.
  # shellcheck disable=SC2064
  trap "rm -rf '$rootfs'" EXIT
  container=$(docker create "$IMAGE")
  docker export "$container" | tar -x -C "$rootfs" 2>/dev/null || true
  docker rm "$container" >/dev/null
  [[ -d $rootfs/app ]] || die "$IMAGE has no /app: is it the app image?"

  local unwanted
  unwanted=$(find "$rootfs" -xdev \( -name .env -o -name '.env.*' -o -name .git -o -name .netrc \
    -o -path "$rootfs/app/tests" -o -path "$rootfs/app/.venv*" \) -print 2>/dev/null | sed "s|^$rootfs||")
  [[ -z $unwanted ]] || die "$IMAGE contains files that must stay out (check .dockerignore): $unwanted"

  "$REPO_ROOT/scripts/scan-secrets" --exclude proc --exclude site-packages "$rootfs" \
    || die "scan-secrets found possible secrets in $IMAGE (listed above; paths are under a temporary copy of its filesystem)."
  log "$IMAGE: no secrets, no .env, tests or git metadata"
}

main "$@"
