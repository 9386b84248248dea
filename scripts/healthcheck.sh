#!/usr/bin/env bash
# Container healthcheck (Dockerfile.supervisor's HEALTHCHECK): healthy only when every
# supervisord program is RUNNING and the web's /readyz answers 200. The programs are the
# [program:NAME] sections of supervisord.conf, so a service added there is checked too.
#
# Environment: PUBSUB_HOME (where supervisord.conf is), WEB_PORT, READYZ_URL (overrides
# the URL built from WEB_PORT).
set -Eeuo pipefail

CONF=${PUBSUB_HOME:-/app}/supervisord.conf
PROGRAMS=()
READYZ_URL=${READYZ_URL:-http://127.0.0.1:${WEB_PORT:-3000}/readyz}

fail() {
  echo "unhealthy: $*" >&2
  exit 1
}

read_programs() {
  [[ -r $CONF ]] || fail "cannot read ${CONF}; set PUBSUB_HOME to the folder holding supervisord.conf"
  mapfile -t PROGRAMS < <(sed -n 's/^\[program:\([A-Za-z0-9_.-]*\)\][[:space:]]*$/\1/p' "$CONF")
  ((${#PROGRAMS[@]} > 0)) || fail "${CONF} defines no [program:NAME] section"
}

check_programs() {
  local status name state
  # supervisorctl exits 3 when some program is not RUNNING: the states below say which.
  status=$(supervisorctl -c "$CONF" status 2>&1) || [[ $? -eq 3 ]] \
    || fail "supervisorctl status failed: ${status}"
  for name in "${PROGRAMS[@]}"; do
    state=$(awk -v n="$name" '$1 == n {print $2}' <<<"$status")
    [[ $state == RUNNING ]] || fail "program ${name} is ${state:-missing}, not RUNNING"
  done
}

check_web_ready() {
  python3 - "$READYZ_URL" <<'PY' || fail "web is not ready at ${READYZ_URL}"
import sys
import urllib.request

# No proxies: a proxy from the environment must not answer for 127.0.0.1.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(sys.argv[1], timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as error:
    print(error, file=sys.stderr)
    sys.exit(1)
PY
}

main() {
  read_programs
  check_programs
  check_web_ready
  echo "healthy: ${#PROGRAMS[@]} programs RUNNING, ${READYZ_URL} ready"
}

main "$@"
