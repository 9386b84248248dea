"""Session fixtures: a real emulator, the stack's settings, a real supervisord tree.

Layers: emulator -> stack_env -> stack -> api. Each starts once per session. The emulator
is chosen by one switch, TEST_EMULATOR (default `native`: LocalStack from .venv-localstack).
The stack's store is SQLite unless a module parametrizes `store_kind` (test_pipeline runs
on both): its PostgreSQL stack gets a fresh database and its own resource prefix.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub_supervisor.emulator import NativeLocalStack, free_port
from pubsub_supervisor.settings import Settings
from tests.support.postgres import fresh_database
from tests.support.stack import ROOT, Api, SupervisedStack, provision

EMULATOR_SERVICES = ("sns", "sqs", "ses", "sts")
PREFIX = "pubsub"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeLocalStack]:
    """LocalStack, started natively on a free port with the project's init hooks."""
    kind = os.environ.get("TEST_EMULATOR", "native")
    if kind != "native":
        pytest.fail(f"TEST_EMULATOR={kind!r} is not supported; use 'native'")
    emulator = NativeLocalStack(
        port=free_port(),
        state_dir=tmp_path_factory.mktemp("localstack"),
        init_dir=ROOT / "localstack" / "init",
        venv=ROOT / ".venv-localstack",
        services=EMULATOR_SERVICES,
        extra_env={"PUBSUB_SOURCE": str(ROOT), "RESOURCE_PREFIX": PREFIX},
    )
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def store_kind(request: pytest.FixtureRequest) -> str:
    """The stack's store: `sqlite`, or what a module parametrizes (`postgres`)."""
    kind: str = getattr(request, "param", "sqlite")
    return kind


@pytest.fixture(scope="session")
def stack_env(
    emulator: NativeLocalStack,
    tmp_path_factory: pytest.TempPathFactory,
    store_kind: str,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, str]]:
    """Environment of every program: the emulator's address, private ports and files."""
    env = {
        "AWS_ENDPOINT_URL": emulator.endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "RESOURCE_PREFIX": PREFIX,
        "WEB_PORT": str(free_port()),
        "DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "DATABASE_URL": "",
        "LOG_LEVEL": "INFO",
    }
    if store_kind == "sqlite":
        yield env
        return
    if store_kind != "postgres":
        pytest.fail(f"unknown store_kind {store_kind!r}")
    server: str = request.getfixturevalue("postgres_server")
    with fresh_database(server) as url:
        # Its own queues: messages a previous stack left behind cannot reach this one.
        env.update(DATABASE_URL=url, RESOURCE_PREFIX=f"{PREFIX}-pg")
        provision(env)
        yield env


@pytest.fixture(scope="session")
def stack_settings(stack_env: dict[str, str]) -> Settings:
    """The same settings the programs read, for clients in the tests."""
    values = {k.lower(): v for k, v in stack_env.items() if not k.startswith("AWS_S")}
    return Settings.model_validate(values)


@pytest.fixture(scope="session")
def stack(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SupervisedStack]:
    """supervisord running the web, its worker and the three services."""
    stack = SupervisedStack(tmp_path_factory.mktemp("stack"), stack_env)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def api(stack: SupervisedStack) -> Api:
    """An HTTP client of the stack's web."""
    return Api(stack.base_url)


@pytest.fixture(scope="session")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder for tests that start their own processes."""
    return tmp_path_factory.mktemp("scratch")
