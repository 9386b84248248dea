"""Session fixtures: a real emulator, the stack's settings, a real supervisord tree.

Layers: emulator -> stack_env -> stack -> api. Each starts once per session. The emulator
is chosen by one switch, TEST_EMULATOR: `native` (the default: LocalStack from
.venv-localstack) or `testcontainers` (a LocalStack container; the image is LOCALSTACK_IMAGE,
else localstack/localstack:4.14.0 or the stand-in scripts/docker/prepare.sh builds).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub_supervisor.emulator import NativeLocalStack, free_port
from pubsub_supervisor.settings import Settings
from tests.support.docker import LOCALSTACK_IMAGES, local_image
from tests.support.emulators import ContainerLocalStack, Emulator
from tests.support.stack import ROOT, Api, SupervisedStack

EMULATOR_SERVICES = ("sns", "sqs", "ses", "sts")
PREFIX = "pubsub"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """LocalStack on a free 127.0.0.1 port with the project's init hooks (see TEST_EMULATOR)."""
    kind = os.environ.get("TEST_EMULATOR", "native")
    if kind == "testcontainers":
        yield from container_emulator()
        return
    if kind != "native":
        pytest.fail(f"TEST_EMULATOR={kind!r} is not supported; use 'native' or 'testcontainers'")
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


def container_emulator() -> Iterator[Emulator]:
    """LocalStack in a container started by testcontainers."""
    container = ContainerLocalStack(
        image=local_image("LOCALSTACK_IMAGE", LOCALSTACK_IMAGES),
        root=ROOT,
        services=EMULATOR_SERVICES,
        env={"RESOURCE_PREFIX": PREFIX},
    )
    container.start()
    yield container
    container.stop()


@pytest.fixture(scope="session")
def stack_env(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of every program: the emulator's address, private ports and files."""
    return {
        "AWS_ENDPOINT_URL": emulator.endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "RESOURCE_PREFIX": PREFIX,
        "WEB_PORT": str(free_port()),
        "DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "LOG_LEVEL": "INFO",
    }


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
