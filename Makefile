# pubsub-supervisor: every command a developer or CI needs.
# `make dev` runs the stack natively; `make test` runs the whole suite. Both bootstrap
# what they need (virtualenvs from the lock files) on first use.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell scripts/find-python)
UV_VERSION := 0.13.8
UV := .uv/bin/uv
VENV := .venv
EMULATOR_VENV := .venv-localstack
MINISTACK_VENV := .venv-ministack
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Byte-compile what uv installs: every program, CLI call and emulator start would otherwise
# compile boto3, SQLAlchemy and the rest again wherever PYTHONDONTWRITEBYTECODE is set (a
# service's start: 3.0 s without, 1.0 s with).
export UV_COMPILE_BYTECODE := 1

.PHONY: help venv emulator-venv dev emulator test test-quick quick-checks quick-integration test-unit test-fuzz test-integration test-browser screenshots lint fmt typecheck provision status ctl queues publish-sample clean bench bench-quick dlq redrive ministack-venv test-parity audit scan-secrets test-faults test-docker up down image logs up-fg watch down-volumes docker-ps docker-logs docker-ctl

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(UV):
	@test -n "$(PYTHON)" || { echo "No Python 3.12+ found: set PYTHON=/path/to/python3.12+" >&2; exit 1; }
	@echo ">> bootstrapping uv $(UV_VERSION) with $(PYTHON)"
	@$(PYTHON) -m venv .uv && .uv/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@echo ">> installing the app's virtualenv from uv.lock"
	@$(UV) sync --frozen --python $(PYTHON) --quiet
	@touch $@

$(EMULATOR_VENV)/.synced: localstack/requirements-native.lock | $(UV)
	@echo ">> installing LocalStack (native) into $(EMULATOR_VENV) from its lock file"
	@$(UV) venv --quiet --allow-existing --python $(PYTHON) $(EMULATOR_VENV)
	@$(UV) pip install --quiet --no-deps --python $(EMULATOR_VENV)/bin/python -r localstack/requirements-native.lock
	@touch $@

$(MINISTACK_VENV)/.synced: ministack/requirements.lock | $(UV)
	@echo ">> installing MiniStack into $(MINISTACK_VENV) from its lock file"
	@$(UV) venv --quiet --allow-existing --python $(PYTHON) $(MINISTACK_VENV)
	@$(UV) pip install --quiet --no-deps --python $(MINISTACK_VENV)/bin/python -r ministack/requirements.lock
	@touch $@

venv: $(VENV)/.synced ## Create or update the app's virtualenv
emulator-venv: $(EMULATOR_VENV)/.synced ## Create the native LocalStack virtualenv
ministack-venv: $(MINISTACK_VENV)/.synced ## Create the MiniStack virtualenv (parity tier)

# `make dev RELOAD=0`: no restart of the programs whose code changes.
RELOAD ?= 1

dev: venv emulator-venv ## Run the whole stack natively: LocalStack, then supervisord (Ctrl-C stops it)
	$(VENV)/bin/python -m devtools.dev $(if $(filter 0,$(RELOAD)),--no-reload)

emulator: venv emulator-venv ## Run only the native LocalStack, set up as `make dev` does (Ctrl-C stops it)
	$(VENV)/bin/python -m devtools.dev --emulator-only

lint: venv ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: venv ## Format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: venv ## mypy (strict)
	$(VENV)/bin/mypy

test: lint typecheck emulator-venv ## The whole suite: lint, types, unit, integration and fault tests
	$(VENV)/bin/pytest

# The inner loop: the quick integration tests (`-m quick`, one emulator and one stack) run
# beside lint, types and unit tests (one after another); each part prints when it is done.
test-quick: venv emulator-venv ## Lint, types, unit tests and the quick integration tests, side by side (~3 min)
	@$(MAKE) --no-print-directory --keep-going -j2 --output-sync=target quick-integration quick-checks

quick-integration:
	$(VENV)/bin/pytest tests/integration -m quick

quick-checks: lint typecheck
	$(VENV)/bin/pytest tests/unit

test-unit: venv ## Unit tests only (no emulator)
	$(VENV)/bin/pytest tests/unit

test-fuzz: venv ## The web's fuzz with many examples (FUZZ_EXAMPLES, 1000 per route by default here)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(VENV)/bin/pytest tests/unit -m fuzz

test-integration: venv emulator-venv ## Integration tests (they start LocalStack and supervisord)
	$(VENV)/bin/pytest tests/integration

test-browser: venv emulator-venv ## Browser tests in headless Chromium (apt-get install chromium)
	$(VENV)/bin/pytest tests/browser

screenshots: test-browser ## Refresh the README's screenshots from a browser test run
	mkdir -p docs/img
	cp tests/browser/artifacts/order.png tests/browser/artifacts/dashboard.png docs/img/

test-faults: venv emulator-venv ## Fault tests: kills, restarts, outages, poison (own emulator and stack, ~5 min)
	$(VENV)/bin/pytest tests/faults

test-docker: venv ## Docker tier: the compose stack, and the integration suite on a LocalStack container
	$(VENV)/bin/pytest -m docker
	TEST_EMULATOR=testcontainers $(VENV)/bin/pytest tests/integration -m "not docker"

test-parity: venv ministack-venv ## Integration tests on moto's server mode and MiniStack
	TEST_EMULATOR=moto $(VENV)/bin/pytest tests/integration
	TEST_EMULATOR=ministack $(VENV)/bin/pytest tests/integration

audit: venv ## pip-audit the locked dependencies (needs PyPI's JSON API)
	$(VENV)/bin/python scripts/audit_deps.py --require-data

scan-secrets: ## Look for credentials, account ids, keys and tokens in the repo
	scripts/scan-secrets .

# The same variables devtools/dev.py gives supervisord, so supervisorctl finds its socket.
SUPERVISOR_ENV := PUBSUB_HOME=$(CURDIR) PUBSUB_VENV=$(CURDIR)/$(VENV) PUBSUB_RUN_DIR=$(CURDIR)/var/run PUBSUB_LOG_DIR=$(CURDIR)/var/log

status: venv ## supervisorctl status of the stack `make dev` runs
	@$(SUPERVISOR_ENV) $(VENV)/bin/supervisorctl -c supervisord.conf status

logs: venv ## Follow every program's log of the native stack in one stream (Ctrl-C stops)
	@$(SUPERVISOR_ENV) $(VENV)/bin/pubsub logs --follow

ctl: venv ## Any supervisorctl command: make ctl ARGS="tail -f email_service"
	@$(SUPERVISOR_ENV) $(VENV)/bin/supervisorctl -c supervisord.conf $(ARGS)

provision: venv ## Apply the topology to AWS_ENDPOINT_URL (or real AWS when unset)
	$(VENV)/bin/pubsub provision

queues: venv ## pubsub status: every queue and DLQ, visible, in flight, dead (ARGS=--check)
	@$(VENV)/bin/pubsub status $(ARGS)

publish-sample: venv ## Place a sample order through the web (ARGS="--wait" or "--direct")
	@$(VENV)/bin/pubsub publish-sample $(ARGS)

bench: venv emulator-venv ## Performance benchmark: drain, end to end, footprint (results in bench/results/)
	$(VENV)/bin/python -m bench all --repeat 3

bench-quick: venv emulator-venv ## Every part of the benchmark with small counts (what CI runs; a few minutes)
	$(VENV)/bin/python -m bench all --quick

dlq: venv ## List what sits in each dead-letter queue, with the reason
	$(VENV)/bin/pubsub dlq list

redrive: venv ## Move dead-lettered messages back to their queue (QUEUE=email for one)
	$(VENV)/bin/pubsub dlq redrive $(if $(QUEUE),--queue $(QUEUE))

# --- Containers: docker-compose.yml ---------------------------------------------------------
# `docker compose` (v2) where installed, else Compose v1's `docker-compose`; both read docker-compose.yml.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
# A variable from the environment, else from .env (as compose reads it), else a default.
dotenv = $(or $($(1)),$(shell sed -n 's/^$(1)=//p' .env 2>/dev/null | tail -n 1),$(2))
# One app image tag per checkout (scripts/docker/lib.sh), so two checkouts on one engine
# never run each other's code; APP_IMAGE (environment or .env) overrides it.
APP_IMAGE := $(call dotenv,APP_IMAGE,$(shell bash -c 'source scripts/docker/lib.sh && checkout_app_image .'))
export APP_IMAGE
# exec without a terminal (CI, pipes) needs -T.
COMPOSE_EXEC := exec $(shell [ -t 0 ] || echo -T)

up: ## Start LocalStack + the app container in the background, building the image (web on 127.0.0.1:3001)
	$(COMPOSE) up --build --detach
	@echo ">> web and UI: http://127.0.0.1:$(call dotenv,APP_PORT,3001)/ (healthy in about a minute: make docker-ps)"
	@echo ">> make docker-logs follows the console; make down stops the stack"

up-fg: ## The same in the foreground, the console in the terminal (Ctrl-C stops it)
	$(COMPOSE) up --build

watch: ## up, then copy every code change into the app container and restart it (Compose v2)
	@docker compose version >/dev/null 2>&1 || { echo "docker compose watch needs Compose v2: run scripts/docker/engine.sh as root (it installs the plugin)" >&2; exit 1; }
	docker compose -f docker-compose.yml -f docker-compose.watch.yml watch

down: ## Stop and remove the compose stack (its data volume stays)
	$(COMPOSE) down

down-volumes: ## The same, and drop the data volume (every order and store)
	$(COMPOSE) down --volumes

docker-ps: ## The stack's containers and their health
	@$(COMPOSE) ps

docker-logs: ## Follow the stack's console (ARGS="app" for one service, ARGS="--tail 50 app")
	$(COMPOSE) logs --follow $(ARGS)

docker-ctl: ## supervisorctl in the app container: make docker-ctl ARGS="restart email_service"
	@$(COMPOSE) $(COMPOSE_EXEC) app supervisorctl $(or $(ARGS),status)

image: ## Build the app image on the local base image (machines that cannot pull python:3.13-slim)
	bash scripts/docker/prepare.sh
	bash scripts/docker/app-image.sh

clean: ## Remove virtualenvs and runtime state
	rm -rf .uv $(VENV) $(EMULATOR_VENV) var
