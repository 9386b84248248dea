#!/usr/bin/env bash
# Docker tier: a running engine with compose, the local base, LocalStack and PostgreSQL
# images, and the app image (Dockerfile.supervisor) built on that base and scanned for
# secrets. Any failure here fails CI: the compose and testcontainers tests must run, not skip.
# Appends the image names and testcontainers settings the tests read to $CI_ENV_FILE.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."

start=$(date +%s)
bash scripts/docker/prepare.sh
# The watch test needs Compose v2 (engine.sh installs it): fail here rather than later.
docker compose version >/dev/null 2>&1 \
  || { echo "!! 40-docker: no docker compose (v2) after prepare.sh: see engine.sh's output above" >&2; exit 1; }

export BASE_IMAGE=pubsub-supervisor/base:trixie
export APP_IMAGE=pubsub-supervisor/app:latest
image_start=$(date +%s)
bash scripts/docker/app-image.sh
echo ">> 40-docker: app image built in $(($(date +%s) - image_start)) s"
bash scripts/docker/scan-image.sh "$APP_IMAGE"

cat >>"${CI_ENV_FILE:?run through .ci/run}" <<ENV
LOCALSTACK_IMAGE=pubsub-supervisor/localstack:4.14.0-native
POSTGRES_IMAGE=pubsub-supervisor/postgres:trixie
BASE_IMAGE=$BASE_IMAGE
APP_IMAGE=$APP_IMAGE
TESTCONTAINERS_RYUK_DISABLED=true
TESTCONTAINERS_CONNECTION_MODE=docker_host
TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
ENV
echo ">> 40-docker: Docker tier ready in $(($(date +%s) - start)) s"
