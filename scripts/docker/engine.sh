#!/usr/bin/env bash
# Make a Docker engine usable here: install what is missing (docker.io, docker-compose,
# debootstrap), start dockerd in the background, and wait until `docker info` answers.
# Safe to run again: an engine that already answers is left alone.
#
# Compose: Debian ships Compose v1 as the `docker-compose` command; the `docker compose`
# v2 plugin is not packaged here. Both read the same docker-compose.yml, so users may run
# either, and the tests use whichever of the two exists.
#
# Environment: DOCKERD_LOG (default /var/log/pubsub-dockerd.log), DOCKERD_PIDFILE
# (default /var/run/docker.pid), DOCKERD_TIMEOUT in seconds (default 60).
set -Eeuo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/pubsub-dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/docker.pid}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}

have_compose() {
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

engine_answers() { docker info >/dev/null 2>&1; }

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

main() {
  local start
  start=$(now)
  install_tools
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
