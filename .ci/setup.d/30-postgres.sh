#!/usr/bin/env bash
# PostgreSQL tier: Debian's server in a private cluster on 127.0.0.1, for the PostgreSQL
# variants of the pipeline, store and scale-out tests. It hands them TEST_POSTGRES_URL (a
# role that may create databases: each test makes its own). DATABASE_URL is left alone on
# purpose: the default tests stay on SQLite.
set -Eeuo pipefail

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "postgresql: missing, and installing it needs root: sudo apt-get install postgresql" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)

# A fixed port away from the default 5432 (the package's own cluster may hold that one);
# the next free one if something else listens there, or holds it as a client's port (the
# range is also the kernel's ephemeral one, so a start can still lose the port: retried).
port=55432
next_free_port() {
  while (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
}
next_free_port

dir=$(mktemp -d /var/tmp/pubsub-ci-postgres.XXXXXX)
chmod 755 "$dir"
as_server() {
  # initdb and postgres refuse to run as root.
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi

as_server "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  --encoding=UTF8 --locale=C --no-sync >/dev/null
# Test data is disposable: no fsync. Two stacks of several programs need many connections.
start_server() {
  as_server "$bin/pg_ctl" start -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "\
    -p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir \
    -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null
}
for attempt in 1 2 3 4 5; do
  if start_server; then break; fi
  if [ "$attempt" = 5 ]; then
    echo "postgresql: could not start (see $dir/server.log)" >&2
    exit 1
  fi
  echo "postgresql: port $port was taken as the server started; trying the next one" >&2
  port=$((port + 1))
  next_free_port
done

psql_admin() { as_server "$bin/psql" -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1 -qc "$1"; }
psql_admin "CREATE ROLE pubsub LOGIN CREATEDB PASSWORD 'pubsub'"
psql_admin "CREATE DATABASE pubsub OWNER pubsub"

{
  echo "TEST_POSTGRES_URL=postgresql+psycopg://pubsub:pubsub@127.0.0.1:$port/pubsub"
  echo "PUBSUB_CI_PGDATA=$dir/data"
} >>"$CI_ENV_FILE"
echo "postgresql: $("$bin/postgres" --version) on 127.0.0.1:$port (data: $dir/data)"
