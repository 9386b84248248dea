#!/usr/bin/env bash
# Build the local base image (Debian trixie, minbase, python3 3.13 + venv, CA bundle) with
# debootstrap and `docker import`, for machines that cannot pull `python:3.13-slim`.
# Project Dockerfiles take it as `--build-arg BASE_IMAGE=pubsub-supervisor/base:trixie`.
# Safe to run again: an existing image is kept.
#
# Environment: BASE_IMAGE (tag to build), DEBIAN_MIRROR (default: the Debian mirror this
# machine's apt sources use), BASE_SUITE (default trixie, whose python3 is 3.13).
set -Eeuo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE_IMAGE=${BASE_IMAGE:-pubsub-supervisor/base:trixie}
BASE_SUITE=${BASE_SUITE:-trixie}
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

build_rootfs() {
  local dir=$1 mirror=$2
  log "debootstrap $BASE_SUITE from $mirror (takes about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$BASE_SUITE" "$dir" "$mirror" >"$dir.log" 2>&1 || {
    tail -n 20 "$dir.log" >&2
    die "debootstrap failed (last lines above): check that $mirror serves '$BASE_SUITE', or set DEBIAN_MIRROR to a mirror that does."
  }
  # The host's bundle holds every CA this machine trusts (including any local TLS
  # interception), so image builds that download packages trust the same servers.
  cp "$HOST_CA_BUNDLE" "$dir/etc/ssl/certs/ca-certificates.crt"
  # Package lists and caches only make the image bigger.
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
}

cleanup() {
  local dir=$1
  [[ -d $dir ]] || return 0
  # An interrupted debootstrap can leave /proc or /sys mounted inside the tree.
  local mnt
  awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r mnt; do
    umount -l "$mnt" || true
  done
  rm -rf --one-file-system "$dir" "$dir.log"
}

main() {
  require_docker
  if image_exists "$BASE_IMAGE"; then
    log "$BASE_IMAGE already exists; nothing to do"
    return 0
  fi
  require_root "debootstrap"
  apt_install_missing debootstrap
  [[ -r $HOST_CA_BUNDLE ]] || die "$HOST_CA_BUNDLE is missing: install the ca-certificates package on this machine."
  local mirror=${DEBIAN_MIRROR:-}
  if [[ -z $mirror ]]; then
    mirror=$(host_mirror) || true
    [[ -n $mirror ]] || die "could not read a Debian mirror from this machine's apt sources: set DEBIAN_MIRROR=http://<mirror>/debian."
  fi

  local start dir
  start=$(now)
  dir=$(mktemp -d /var/tmp/pubsub-base.XXXXXX)
  # Expanded now on purpose: $dir is local to this function.
  # shellcheck disable=SC2064
  trap "cleanup '$dir'" EXIT
  build_rootfs "$dir" "$mirror"
  log "importing $(du -sh --one-file-system "$dir" | cut -f1) as $BASE_IMAGE"
  tar -C "$dir" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $BASE_SUITE" \
    - "$BASE_IMAGE" >/dev/null
  log "built $BASE_IMAGE ($(docker run --rm "$BASE_IMAGE" python3 --version)) in $(($(now) - start)) s"
}

# Parallel runs would both debootstrap: let the second wait and then find the image.
exec 9>"${TMPDIR:-/tmp}/pubsub-docker-base-image.lock"
flock -w 900 9 || die "another base-image.sh has held the build lock for 15 minutes: check what it is doing."
main "$@"
