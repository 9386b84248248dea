#!/bin/bash
# Entrypoint of the local PostgreSQL image (Dockerfile.local): on an empty data folder,
# initdb with the POSTGRES_* settings; then run the server as the postgres user.
set -Eeuo pipefail

say() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }

# Run a command as the postgres user (setpriv execs in place: the server stays PID 1 and
# gets the container's signals itself).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
  fi
  exec "$@"
}

init_cluster() {
  local user=${POSTGRES_USER:-postgres} db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    say "POSTGRES_PASSWORD is not set: set it (the password of $user) to create the database."
    exit 1
  fi
  say "initialising $PGDATA (superuser $user, database $db)"
  local pwfile
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres: "$pwfile"
  # Local (socket) connections trusted, as upstream: only this container reaches them.
  (as_postgres initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --encoding=UTF8 \
    --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null)
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    # Single-user mode: no server listens before the database exists, so a healthcheck
    # never sees a half-made cluster.
    echo "CREATE DATABASE \"$db\" OWNER \"$user\";" \
      | (as_postgres postgres --single -D "$PGDATA" -j postgres >/dev/null)
  fi
  say "initialised"
}

if [ "${1:-}" = postgres ]; then
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
  fi
  [ -s "$PGDATA/PG_VERSION" ] || init_cluster
  as_postgres "$@"
fi
exec "$@"
