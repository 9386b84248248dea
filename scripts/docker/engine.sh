#!/usr/bin/env bash
# Make a Docker engine usable here: install what is missing (docker.io, docker-compose,
# debootstrap, the Compose v2 plugin), start dockerd in the background, and wait until
# `docker info` answers. Safe to run again: an engine that already answers is left alone.
#
#   scripts/docker/engine.sh          install and start (what prepare.sh runs)
#   scripts/docker/engine.sh status   is an engine answering, and which dockerd is it
#   scripts/docker/engine.sh stop     stop the dockerd this script started
#
# Compose: Debian 12 ships Compose v1 as the `docker-compose` command, and no `docker
# compose` v2 plugin (which `docker compose watch` needs). Debian 13 (trixie) packages the
# plugin with no dependency but libc: it is downloaded from the mirror this machine's apt
# already uses, through a private apt configuration (nothing is installed from trixie, no
# other package changes), and its one binary copied into the CLI plugin folder.
#
# Environment: DOCKERD_LOG (default /var/log/pubsub-dockerd.log), DOCKERD_PIDFILE
# (default /var/run/docker.pid), DOCKERD_TIMEOUT in seconds (default 60),
# COMPOSE_V2_PACKAGE (default docker-compose=2.26.1-4; empty: skip it), DEBIAN_MIRROR (default: the
# machine's own), COMPOSE_PLUGIN_DIR (default /usr/libexec/docker/cli-plugins).
set -Eeuo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/pubsub-dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/docker.pid}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
COMPOSE_V2_PACKAGE=${COMPOSE_V2_PACKAGE-docker-compose=2.26.1-4}
COMPOSE_V2_SUITE=trixie
COMPOSE_PLUGIN_DIR=${COMPOSE_PLUGIN_DIR:-/usr/libexec/docker/cli-plugins}

have_compose() {
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

engine_answers() { docker info >/dev/null 2>&1; }

compose_v2() { docker compose version >/dev/null 2>&1; }

# Download the trixie package of the Compose v2 plugin and copy out its binary.
install_compose_v2() {
  if compose_v2; then
    return 0
  fi
  if [[ -z $COMPOSE_V2_PACKAGE ]]; then
    log "COMPOSE_V2_PACKAGE is empty: no docker compose v2 plugin (docker compose watch needs it)"
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    # Compose v1 still runs everything but `make watch`: no reason to fail a non-root run.
    log "no docker compose v2 plugin (make watch needs it): run this script as root to install it"
    return 0
  fi
  local mirror=${DEBIAN_MIRROR:-} work
  if [[ -z $mirror ]]; then
    mirror=$(host_mirror) || true
    [[ -n $mirror ]] || die "could not read a Debian mirror from this machine's apt sources: set DEBIAN_MIRROR=http://<mirror>/debian."
  fi
  work=$(mktemp -d "${TMPDIR:-/tmp}/pubsub-compose-v2.XXXXXX")
  # Expanded now on purpose: $work is local to this function.
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  mkdir -p "$work/lists/partial" "$work/parts" "$work/pkg"
  echo "deb $mirror $COMPOSE_V2_SUITE main" >"$work/sources.list"
  # Only this list, read into private state: the machine's own apt never sees trixie.
  local apt_opts=(
    -o "Dir::Etc::SourceList=$work/sources.list"
    -o "Dir::Etc::SourceParts=$work/parts"
    -o "Dir::State::Lists=$work/lists"
    -o Acquire::Retries=3 -o APT::Sandbox::User=root
  )
  log "downloading $COMPOSE_V2_PACKAGE from $mirror $COMPOSE_V2_SUITE (the docker compose v2 plugin)"
  apt-get "${apt_opts[@]}" -qq update >"$work/apt.log" 2>&1 || {
    tail -n 20 "$work/apt.log" >&2
    die "apt-get update of $COMPOSE_V2_SUITE failed (above): check that $mirror serves '$COMPOSE_V2_SUITE', or set DEBIAN_MIRROR."
  }
  (cd "$work/pkg" && apt-get "${apt_opts[@]}" -qq download "$COMPOSE_V2_PACKAGE") >>"$work/apt.log" 2>&1 || {
    tail -n 20 "$work/apt.log" >&2
    die "apt-get download $COMPOSE_V2_PACKAGE failed (above): set COMPOSE_V2_PACKAGE=docker-compose=<version> to one that '$COMPOSE_V2_SUITE' has."
  }
  dpkg-deb -x "$work"/pkg/*.deb "$work/root"
  local plugin=$work/root/usr/libexec/docker/cli-plugins/docker-compose
  [[ -x $plugin ]] || die "$COMPOSE_V2_PACKAGE holds no usr/libexec/docker/cli-plugins/docker-compose: pick another COMPOSE_V2_PACKAGE."
  install -D -m 0755 "$plugin" "$COMPOSE_PLUGIN_DIR/docker-compose"
  compose_v2 || die "docker compose does not answer after copying the plugin to $COMPOSE_PLUGIN_DIR: run 'docker compose version' to see why."
  log "installed $COMPOSE_PLUGIN_DIR/docker-compose ($(docker compose version --short))"
}

install_tools() {
  local wanted=()
  engine_answers || command -v dockerd >/dev/null || wanted+=(docker.io)
  have_compose || wanted+=(docker-compose)
  command -v debootstrap >/dev/null || wanted+=(debootstrap)
  if [[ ${#wanted[@]} -eq 0 ]]; then
    log "docker tooling already installed"
    return 0
  fi
  apt_install_missing "${wanted[@]}"
}

dockerd_running() {
  [[ -s $DOCKERD_PIDFILE ]] && kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null
}

start_dockerd() {
  require_root "starting dockerd"
  command -v dockerd >/dev/null || die "dockerd is missing after the install: install the docker.io package by hand."
  if dockerd_running; then
    log "dockerd (pid $(cat "$DOCKERD_PIDFILE")) is already starting; waiting for it"
    return 0
  fi
  mkdir -p "$(dirname "$DOCKERD_LOG")" "$(dirname "$DOCKERD_PIDFILE")"
  log "starting dockerd (log: $DOCKERD_LOG)"
  # setsid + nohup: dockerd outlives this script and the shell that ran it. 9>&-: it must
  # not inherit the lock below, or every later run would wait on it forever.
  setsid nohup dockerd --pidfile "$DOCKERD_PIDFILE" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
}

wait_for_engine() {
  local deadline=$(($(now) + DOCKERD_TIMEOUT))
  until engine_answers; do
    if [[ $(now) -ge $deadline ]]; then
      tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
      die "dockerd did not answer 'docker info' within ${DOCKERD_TIMEOUT}s: read $DOCKERD_LOG (last lines above), fix the cause, then run this script again."
    fi
    if ! dockerd_running && ! pgrep -x dockerd >/dev/null; then
      tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
      die "dockerd exited while starting: read $DOCKERD_LOG (last lines above)."
    fi
    sleep 1
  done
}

# Where the engine comes from: the dockerd this script started, another one, or none.
status() {
  if dockerd_running; then
    log "dockerd (pid $(cat "$DOCKERD_PIDFILE")) keeps running in the background (log: $DOCKERD_LOG); stop it with: $0 stop"
  elif engine_answers; then
    log "a Docker engine answers, not started by this script: stop it the way it was started"
  else
    log "no Docker engine answers"
    return 1
  fi
}

stop_dockerd() {
  if ! dockerd_running; then
    log "no dockerd started by this script is running ($DOCKERD_PIDFILE)"
    return 0
  fi
  require_root "stopping dockerd"
  local pid deadline
  pid=$(cat "$DOCKERD_PIDFILE")
  log "stopping dockerd (pid $pid); running containers stop with it"
  kill -TERM "$pid"
  deadline=$(($(now) + DOCKERD_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    [[ $(now) -lt $deadline ]] || die "dockerd (pid $pid) still runs ${DOCKERD_TIMEOUT}s after SIGTERM: read $DOCKERD_LOG; kill -KILL $pid ends it."
    sleep 1
  done
  log "dockerd stopped"
}

main() {
  case ${1:-start} in
    start) ;;
    status)
      status
      return
      ;;
    stop)
      stop_dockerd
      return
      ;;
    *) die "unknown command '$1': use start (the default), status or stop." ;;
  esac
  local start
  start=$(now)
  install_tools
  install_compose_v2
  if engine_answers; then
    log "Docker engine already answers"
  else
    start_dockerd
    wait_for_engine
    log "Docker engine is up ($(($(now) - start)) s)"
  fi
  have_compose || die "no compose command: install the docker-compose package (or the docker compose v2 plugin)."
  log "engine $(docker version --format '{{.Server.Version}}'), compose: $(compose_name)"
}

compose_name() {
  if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo "docker-compose"; fi
}

# Two runs at once (e.g. parallel jobs) must not start two daemons: serialise on a lock.
exec 9>"${TMPDIR:-/tmp}/pubsub-docker-engine.lock"
flock -w 600 9 || die "another engine.sh has held ${TMPDIR:-/tmp}/pubsub-docker-engine.lock for 10 minutes: check what it is doing (fuser that file)."
main "$@"
