#!/bin/sh
# LocalStack "ready" hook: create the topics, queues, subscriptions and SES identity.
# It runs the project's one topology definition (pubsub_supervisor/topology.py, which
# needs only boto3) with whatever Python the emulator has.
#   PUBSUB_SOURCE: folder holding pubsub_supervisor/ (the native launcher sets it to the
#                  repo; docker-compose mounts the package at /opt/pubsub-supervisor).
#   PUBSUB_PROVISION_ENDPOINT: the emulator's own address (default http://localhost:4566).
set -eu
src="${PUBSUB_SOURCE:-/opt/pubsub-supervisor}"
if [ ! -f "$src/pubsub_supervisor/topology.py" ]; then
  echo "provision: $src/pubsub_supervisor/topology.py not found; mount the package there or set PUBSUB_SOURCE" >&2
  exit 1
fi
for py in "${PUBSUB_PROVISION_PYTHON:-}" /opt/code/localstack/.venv/bin/python python3 python; do
  if [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 && "$py" -c "import boto3" 2>/dev/null; then
    PYTHONPATH="$src" exec "$py" -m pubsub_supervisor.topology
  fi
done
echo "provision: no Python with boto3 found in the emulator; set PUBSUB_PROVISION_PYTHON" >&2
exit 1
