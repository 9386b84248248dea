# shellcheck shell=bash
# Shared helpers for scripts/docker/*.sh (sourced, not run).
# Every script reports progress as ">> name: ..." and failures as "!! name: ..." on stderr.

SCRIPT_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

log() { printf '>> %s: %s\n' "$SCRIPT_NAME" "$*" >&2; }

die() {
  printf '!! %s: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}

# An unexpected failing command names itself and its line, so the log shows where to look.
on_error() {
  local status=$? line=$1 cmd=$2
  printf '!! %s: line %s failed (exit %s): %s\n' "$SCRIPT_NAME" "$line" "$status" "$cmd" >&2
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

require_root() {
  [[ $(id -u) -eq 0 ]] || die "$1 needs root: run it as root (or with sudo)."
}

# Seconds since the epoch, for the timings the scripts print.
now() { date +%s; }

# Install the given Debian packages that are not installed yet, in one apt run.
apt_install_missing() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  require_root "installing ${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with this system's package manager."
  # Other jobs on a shared machine may hold the apt locks: wait for them rather than fail.
  local apt_opts=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
  log "apt-get update (to install: ${missing[*]})"
  local attempt
  for attempt in 1 2 3; do
    if DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" -qq update; then
      break
    fi
    [[ $attempt -lt 3 ]] || die "apt-get update failed 3 times: check the apt sources and that the Debian mirror is reachable."
    log "apt-get update failed (attempt $attempt), retrying in 10 s"
    sleep 10
  done
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed: see the apt output above; 'apt-get -f install' may repair a half-done install."
}

# Fail with a hint when the Docker engine does not answer.
require_docker() {
  docker info >/dev/null 2>&1 || die "the Docker engine does not answer 'docker info': run scripts/docker/engine.sh first."
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The mirror this machine's apt already uses for its own release: `--print-uris update`
# lists the index URLs from every sources format (one-line and deb822) without fetching.
host_mirror() {
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [[ -n $codename ]] || return 1
  apt-get --print-uris update 2>/dev/null \
    | sed -n "s|^'\(.*\)/dists/${codename}/InRelease'.*|\1|p" \
    | head -n 1
}

# The app image's default name for the checkout at $1: one tag per checkout (its folder's
# name and a digest of its path), so two checkouts on one engine never build over each
# other's image. `make` and app-image.sh use it; APP_IMAGE overrides it.
checkout_app_image() {
  local root name digest
  root=$(cd "$1" && pwd -P)
  name=$(basename "$root" | tr -c 'A-Za-z0-9_.\n-' '-' | sed 's/^[.-]*//' | cut -c1-40)
  digest=$(printf '%s' "$root" | sha256sum | cut -c1-8)
  echo "pubsub-supervisor/app:${name:-checkout}-$digest"
}
