#!/usr/bin/env bash
# Stop the PostgreSQL cluster .ci/setup.d/30-postgres.sh started.
set -Eeuo pipefail

data="${PUBSUB_CI_PGDATA:-}"
if [ -z "$data" ] || [ ! -f "$data/postmaster.pid" ]; then
  exit 0
fi
bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" -eq 0 ]; then
  runuser -u postgres -- "$bin/pg_ctl" stop -D "$data" -m fast -w >/dev/null
else
  "$bin/pg_ctl" stop -D "$data" -m fast -w >/dev/null
fi
rm -rf "$(dirname "$data")"
echo "postgresql: stopped"
