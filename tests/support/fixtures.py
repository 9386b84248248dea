"""Fixtures for every tier that runs the real stack (a pytest plugin, loaded by
tests/conftest.py), and the factories behind them for tests that need their own.

Session layers: emulator -> stack_env -> stack -> api. Each starts once per session. The
emulator is chosen by one switch, TEST_EMULATOR (default `native`: LocalStack from
.venv-localstack). Tests that stop the emulator or kill programs build their own with
`start_emulator` and `stack_environment`, so the shared ones stay undisturbed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from pubsub_supervisor.emulator import NativeLocalStack, free_port
from pubsub_supervisor.settings import Settings
from tests.support.stack import ROOT, Api, SupervisedStack

EMULATOR_SERVICES = ("sns", "sqs", "ses", "sts")
PREFIX = "pubsub"


def start_emulator(
    state_dir: Path, topology_env: Mapping[str, str] | None = None, port: int | None = None
) -> NativeLocalStack:
    """LocalStack, started natively with the project's init hooks.

    `topology_env` reaches the init hook (MAX_RECEIVE_COUNT, QUEUE_VISIBILITY_TIMEOUT...);
    pass the same values to `stack_environment` so the programs agree with the queues.
    """
    kind = os.environ.get("TEST_EMULATOR", "native")
    if kind != "native":
        pytest.fail(f"TEST_EMULATOR={kind!r} is not supported; use 'native'")
    emulator = NativeLocalStack(
        port=port or free_port(),
        state_dir=state_dir,
        init_dir=ROOT / "localstack" / "init",
        venv=ROOT / ".venv-localstack",
        services=EMULATOR_SERVICES,
        extra_env={"PUBSUB_SOURCE": str(ROOT), "RESOURCE_PREFIX": PREFIX, **(topology_env or {})},
    )
    emulator.start()
    return emulator


def stack_environment(endpoint_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment of every program: the emulator's address, private ports and files."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "RESOURCE_PREFIX": PREFIX,
        "WEB_PORT": str(free_port()),
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        **overrides,
    }


def settings_for(env: Mapping[str, str]) -> Settings:
    """The same settings the programs read, for clients in the tests."""
    values = {k.lower(): v for k, v in env.items() if not k.startswith("AWS_S")}
    return Settings.model_validate(values)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeLocalStack]:
    """The session's LocalStack."""
    emulator = start_emulator(tmp_path_factory.mktemp("localstack"))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def stack_env(
    emulator: NativeLocalStack, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment of the session stack's programs."""
    return stack_environment(emulator.endpoint_url, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def stack_settings(stack_env: dict[str, str]) -> Settings:
    """The session stack's settings."""
    return settings_for(stack_env)


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
