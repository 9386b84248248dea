"""The scale-out compose override (one container per program, every store in one
PostgreSQL), written from the service registry so that a new service gets its container.

`pubsub compose-scale -o FILE` writes it; tests/unit/test_compose_scale.py checks that it is
valid compose with one container per supervisord program.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pubsub_supervisor import registry
from pubsub_supervisor.registry import ServiceSpec

#: Everything but the services: the program template, PostgreSQL, the web and its worker.
_HEAD = """\
# Scale-out: one program per container, every store in one PostgreSQL, each program
# scaled on its own. An override of docker-compose.yml (its `app` image and emulator),
# written by `pubsub compose-scale` from pubsub_supervisor/registry.py (one container per
# service); do not edit it, write it again:
#
#   .venv/bin/pubsub compose-scale -o var/docker-compose.scale.yml
#   docker compose -f docker-compose.yml -f var/docker-compose.scale.yml up -d \\
#       --scale inventory=3 --scale email=2
#
# (Compose v1: `docker-compose` with the same arguments.) It needs the app image
# (`docker compose build app`) and the PostgreSQL image (bash scripts/docker/prepare.sh, or
# POSTGRES_IMAGE=postgres:17 where the upstream image can be pulled).
#
# The all-in-one `app` (every program under one supervisord, SQLite in its volume) moves to
# the `all-in-one` profile here, so it does not start beside its scaled-out twins. Each
# program's command is its supervisord.conf command; the image's PATH holds its venv.
# Every instance migrates its store at start (one at a time, under an advisory lock).
# See README.md, "Scaling out".

x-program: &program
  image: ${APP_IMAGE:-pubsub-supervisor/app:latest}
  restart: unless-stopped
  stop_grace_period: 20s
  depends_on:
    postgres:
      condition: service_healthy
    # Its ready.d hook creates the queues and topics the programs look up at start.
    localstack:
      condition: service_healthy
  # The image's healthcheck asks supervisord, which does not run in these containers.
  healthcheck:
    disable: true
  environment: &program-env
    AWS_ENDPOINT_URL: ${SCALE_AWS_ENDPOINT_URL:-http://localstack:4566}
    AWS_ACCESS_KEY_ID: test
    AWS_SECRET_ACCESS_KEY: test
    DATABASE_URL: postgresql+psycopg://pubsub:pubsub@postgres:5432/pubsub
    # Many instances share one PostgreSQL: 8 handler threads each (the default is 16)
    # keep the connections within its max_connections.
    CONSUMER_CONCURRENCY: ${CONSUMER_CONCURRENCY:-8}
    # The rest as docker-compose.yml's `app` takes them (the emulator's hook reads the
    # same topology settings), so one `.env` configures either layout.
    AWS_REGION: ${AWS_REGION:-us-east-1}
    RESOURCE_PREFIX: ${RESOURCE_PREFIX:-pubsub}
    MAX_RECEIVE_COUNT: ${MAX_RECEIVE_COUNT:-5}
    QUEUE_VISIBILITY_TIMEOUT: ${QUEUE_VISIBILITY_TIMEOUT:-12}
    EMAIL_SENDER: ${EMAIL_SENDER:-orders@example.com}
    EMAIL_CONFIRM_SECONDS: ${EMAIL_CONFIRM_SECONDS:-60}
    WEB_WORKERS: ${WEB_WORKERS:-1}
    WEB_THREADS: ${WEB_THREADS:-8}
    WEB_TEMPLATES_AUTO_RELOAD: ${WEB_TEMPLATES_AUTO_RELOAD:-false}
    OUTBOX_PUBLISH_ON_COMMIT: ${OUTBOX_PUBLISH_ON_COMMIT:-true}
    OUTBOX_POLL_INTERVAL: ${OUTBOX_POLL_INTERVAL:-0.1}
    OUTBOX_CLAIM_SECONDS: ${OUTBOX_CLAIM_SECONDS:-30}
    OUTBOX_REPUBLISH_AFTER: ${OUTBOX_REPUBLISH_AFTER:-120}
    CONSUMER_POLLERS: ${CONSUMER_POLLERS:-2}
    CONSUMER_WAIT_SECONDS: ${CONSUMER_WAIT_SECONDS:-20}
    CATALOG_PATH: ${CATALOG_PATH:-pubsub_supervisor/catalog.json}
    OPERATOR_PASSWORD: ${OPERATOR_PASSWORD:-}
    TRUSTED_PROXIES: ${TRUSTED_PROXIES:-0}
    ORDER_RATE_LIMIT: ${ORDER_RATE_LIMIT:-30/minute}
    RATE_LIMIT_STORAGE_URI: ${RATE_LIMIT_STORAGE_URI:-memory://}
    MAX_ORDERS_PER_EMAIL_PER_HOUR: ${MAX_ORDERS_PER_EMAIL_PER_HOUR:-10}
    MAX_QUANTITY_PER_LINE: ${MAX_QUANTITY_PER_LINE:-1000}
    MAX_UNITS_PER_ORDER: ${MAX_UNITS_PER_ORDER:-5000}
    LOG_LEVEL: ${LOG_LEVEL:-INFO}

services:
  app:
    profiles: ["all-in-one"]

  postgres:
    # Built here from Debian's package by scripts/docker/prepare.sh (no registry needed);
    # the upstream image takes the same settings: POSTGRES_IMAGE=postgres:17.
    image: ${POSTGRES_IMAGE:-pubsub-supervisor/postgres:trixie}
    environment:
      POSTGRES_USER: pubsub
      POSTGRES_PASSWORD: pubsub
      POSTGRES_DB: pubsub
    # Each program instance keeps up to CONSUMER_CONCURRENCY (+ a few) connections.
    command: ["postgres", "-c", "max_connections=300"]
    volumes:
      - pgdata:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "pubsub", "-d", "pubsub"]
      interval: 2s
      timeout: 3s
      retries: 30

  web:
    <<: *program
    command: ["gunicorn", "--config", "python:web.gunicorn_conf", "web:create_app()"]
    environment:
      <<: *program-env
      PROGRAM_NAME: web
      WEB_HOST: 0.0.0.0
      WEB_PORT: "3000"
      # Unset: the web generates one in its container. Set it (32+ random characters) once
      # several web instances sign session cookies (CSRF tokens): they must share it.
      WEB_SECRET_KEY: ${WEB_SECRET_KEY:-}
    ports:
      # One published port: put a load balancer in front before scaling the web.
      - "127.0.0.1:${SCALE_WEB_PORT:-3002}:3000"
    healthcheck:
      test:
        - CMD
        - python
        - -c
        - "import urllib.request as u; u.urlopen('http://127.0.0.1:3000/readyz', timeout=4)"
      interval: 5s
      timeout: 5s
      retries: 12
      start_period: 30s

  web_worker:
    <<: *program
    command: ["python", "-m", "web.worker"]
    environment:
      <<: *program-env
      PROGRAM_NAME: web_worker

"""

_SERVICE = """\
  {name}:
    <<: *program
    command: {command}
    environment:
      <<: *program-env
      PROGRAM_NAME: {program}

"""

_TAIL = """\
volumes:
  pgdata:
"""


def render(services: Iterable[ServiceSpec] = registry.SERVICES) -> str:
    """The override's YAML, with one container (a compose service) per order service."""
    blocks = [
        _SERVICE.format(
            name=spec.name,
            command=json.dumps(["python", *spec.command]),
            program=spec.program,
        )
        for spec in services
    ]
    return (_HEAD + "".join(blocks) + _TAIL).rstrip("\n") + "\n"
