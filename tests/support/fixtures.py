"""Fixtures for every tier that runs the real stack (a pytest plugin, loaded by
tests/conftest.py), and the factories behind them for tests that need their own.

Session layers: emulator -> stack_env -> stack -> api. Each starts once per session. The
emulator is chosen by one switch, TEST_EMULATOR (default `native`: LocalStack from
.venv-localstack; tests/support/emulators.py has the others). Tests that stop the emulator
or kill programs build their own with `start_localstack` and `stack_environment`, so the
shared ones stay undisturbed.

The session stack's store is SQLite unless a module parametrizes `store_kind`
(test_pipeline runs on both): its PostgreSQL stack gets a fresh database and its own
resource prefix, so nothing a previous stack left in the queues reaches it. The SQLite
stack starts once and serves every module (`make test-quick` is one emulator and this
one stack); the PostgreSQL one runs beside it while its variant's tests do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from devtools.emulator import NativeLocalStack, free_port
from pubsub_supervisor.settings import Settings
from tests.support.emulators import KINDS, Emulator, start_emulator
from tests.support.postgres import fresh_database
from tests.support.stack import ROOT, Api, SupervisedStack, provision

CALL_RECORDER = Path(__file__).resolve().parent / "callrecorder"

EMULATOR_SERVICES = ("sns", "sqs", "ses", "sts")
PREFIX = "pubsub"


def start_localstack(
    state_dir: Path,
    topology_env: Mapping[str, str] | None = None,
    port: int | None = None,
    home: Path = ROOT,
) -> NativeLocalStack:
    """LocalStack, started natively with the project's init hooks (for tests that stop and
    restart it themselves).

    `topology_env` reaches the init hook (MAX_RECEIVE_COUNT, QUEUE_VISIBILITY_TIMEOUT...);
    pass the same values to `stack_environment` so the programs agree with the queues.
    `home` is the project whose init hook and topology it runs (a copy, for a test).
    """
    emulator = NativeLocalStack(
        port=port or free_port(),
        state_dir=state_dir,
        init_dir=home / "localstack" / "init",
        venv=ROOT / ".venv-localstack",
        services=EMULATOR_SERVICES,
        extra_env={"PUBSUB_SOURCE": str(home), "RESOURCE_PREFIX": PREFIX, **(topology_env or {})},
    )
    emulator.start()
    return emulator


def stack_environment(endpoint_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment of every program: the emulator's address, private ports and files."""
    return {
        "PYTHONPATH": str(CALL_RECORDER),
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "RESOURCE_PREFIX": PREFIX,
        "WEB_PORT": str(free_port()),
        "DATA_DIR": str(data_dir),
        # SQLite files in DATA_DIR unless a test passes a PostgreSQL URL.
        "DATABASE_URL": "",
        "LOG_LEVEL": "INFO",
        # The suites place many orders from 127.0.0.1 to a few addresses; the limits have
        # their own tests (tests/integration/test_trust_web.py sets them).
        "ORDER_RATE_LIMIT": "",
        "MAX_ORDERS_PER_EMAIL_PER_HOUR": "0",
        **overrides,
    }


def settings_for(env: Mapping[str, str]) -> Settings:
    """The same settings the programs read, for clients in the tests."""
    values = {k.lower(): v for k, v in env.items() if not k.startswith("AWS_S")}
    return Settings.model_validate(values)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On another emulator, run only the tests that use the session `emulator` fixture.

    The others start LocalStack themselves (its launcher, `make dev`, the fault suite); the
    native tier runs them, and repeating them would not test the other emulator at all.
    """
    kind = os.environ.get("TEST_EMULATOR", "native")
    if kind == "native":
        return
    skip = pytest.mark.skip(reason=f"starts its own LocalStack: run by the native tier, not {kind}")
    for item in items:
        if "emulator" not in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The emulator TEST_EMULATOR names, on a free port, with the topology applied."""
    kind = os.environ.get("TEST_EMULATOR", "native")
    if kind not in KINDS:
        pytest.fail(f"TEST_EMULATOR={kind!r} is not supported; use one of {', '.join(KINDS)}")
    emulator = start_emulator(kind, tmp_path_factory.mktemp(kind), PREFIX)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def store_kind(request: pytest.FixtureRequest) -> str:
    """The session stack's store: `sqlite`, or what a module parametrizes (`postgres`)."""
    kind: str = getattr(request, "param", "sqlite")
    if kind not in ("sqlite", "postgres"):
        pytest.fail(f"unknown store_kind {kind!r}")
    if kind == "postgres" and os.environ.get("TEST_EMULATOR", "native") != "native":
        pytest.skip("the PostgreSQL variant runs in the native tier")
    return kind


class StoreStack:
    """One store's session stack: its environment and call log, supervisord once asked for."""

    def __init__(self, env: dict[str, str], call_log: Path, state_dir: Path) -> None:
        self.env = env
        self.call_log = call_log
        self.state_dir = state_dir
        self.supervised: SupervisedStack | None = None

    @classmethod
    def create(
        cls, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory, kind: str, **env: str
    ) -> StoreStack:
        """The environment of the session stack on `kind` (nothing started yet)."""
        call_log = tmp_path_factory.mktemp(f"calls-{kind}") / "aws-calls.jsonl"
        stack_env = stack_environment(
            emulator.endpoint_url,
            tmp_path_factory.mktemp("data"),
            PUBSUB_TEST_AWS_CALL_LOG=str(call_log),
        )
        # Every emulator keeps a killed consumer's long poll open for the full wait and
        # hands it messages, which come back only after their visibility timeout (30 s).
        # Tests kill and stop the session stack's programs, so its consumers poll 2 s at a
        # time: a dead consumer's poll ends before the next order is placed.
        stack_env["CONSUMER_WAIT_SECONDS"] = "2"
        stack_env.update(env)
        return cls(stack_env, call_log, tmp_path_factory.mktemp(f"stack-{kind}"))

    def started(self) -> SupervisedStack:
        """supervisord with every program, started on the first call."""
        if self.supervised is None:
            supervised = SupervisedStack(self.state_dir, self.env)
            supervised.start()
            self.supervised = supervised
        return self.supervised

    def stop(self) -> None:
        """Stop supervisord if it was started."""
        if self.supervised is not None:
            self.supervised.stop()


@pytest.fixture(scope="session")
def sqlite_stack(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoreStack]:
    """The SQLite session stack: one for the whole session, whatever runs between its tests.

    Not parametrized, so a module that runs on PostgreSQL too does not stop it.
    """
    parts = StoreStack.create(emulator, tmp_path_factory, "sqlite")
    yield parts
    parts.stop()


@pytest.fixture(scope="session")
def store_stack(
    store_kind: str,
    emulator: Emulator,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[StoreStack]:
    """The session stack of `store_kind`; PostgreSQL's runs while that variant's tests do."""
    if store_kind == "sqlite":
        yield request.getfixturevalue("sqlite_stack")
        return
    server: str = request.getfixturevalue("postgres_server")
    with fresh_database(server) as url:
        parts = StoreStack.create(
            emulator,
            tmp_path_factory,
            kind=store_kind,
            DATABASE_URL=url,
            RESOURCE_PREFIX=f"{PREFIX}-pg",
        )
        provision(parts.env)
        try:
            yield parts
        finally:
            parts.stop()


@pytest.fixture(scope="session")
def aws_call_log(store_stack: StoreStack) -> Path:
    """JSON lines: every AWS call the session stack's programs make (see callrecorder)."""
    return store_stack.call_log


@pytest.fixture(scope="session")
def stack_env(store_stack: StoreStack) -> dict[str, str]:
    """Environment of the session stack's programs."""
    return store_stack.env


@pytest.fixture(scope="session")
def stack_settings(stack_env: dict[str, str]) -> Settings:
    """The session stack's settings."""
    return settings_for(stack_env)


@pytest.fixture(scope="session")
def stack(store_stack: StoreStack) -> SupervisedStack:
    """supervisord running the web, its worker and the three services."""
    return store_stack.started()


@pytest.fixture
def api(stack: SupervisedStack) -> Api:
    """An HTTP client of the stack's web."""
    return Api(stack.base_url)


@pytest.fixture(scope="session")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder for tests that start their own processes."""
    return tmp_path_factory.mktemp("scratch")
