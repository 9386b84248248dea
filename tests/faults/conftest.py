"""Fault tests drive the real native stack (LocalStack + supervisord) with a stream of
orders, break something, and account for every order.

They kill programs and stop the emulator, so they run their own emulator and stack
(`own_stack`), never the session's. The queues get a short visibility timeout and
maxReceiveCount (the init hook reads them from the emulator's environment, the programs
from theirs), so a message held by a killed process comes back in seconds.
Each test records its figures; they are printed at the end of the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.emulator import NativeLocalStack
from pubsub_supervisor.clients import AwsClients, make_clients
from pubsub_supervisor.settings import Settings
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures import settings_for, stack_environment, start_localstack
from tests.support.orders import Figures, Ledger, dlq_depths
from tests.support.stack import Api, SupervisedStack, wait_for

#: Topology of the fault stacks: failures come back and dead-letter in seconds.
FAULT_TOPOLOGY = {"QUEUE_VISIBILITY_TIMEOUT": "5", "MAX_RECEIVE_COUNT": "3"}
#: A send whose answer was lost is settled within one redelivery: the email service waits
#: up to 5 s in hand for SES's Send event, so past 6 s silence means "never sent".
FAULT_PROGRAMS = {"EMAIL_CONFIRM_SECONDS": "6"}

FIGURES = pytest.StashKey[list[Figures]]()


@dataclass
class FaultStack:
    """An emulator and a supervisord tree that only one module's tests use."""

    emulator: NativeLocalStack
    stack: SupervisedStack
    env: dict[str, str]
    settings: Settings
    clients: AwsClients
    ledger: Ledger
    api: Api
    proxy: FaultProxy | None

    @property
    def data_dir(self) -> Path:
        """Where the programs keep their SQLite stores."""
        return Path(self.env["DATA_DIR"])

    def dead_lettered(self) -> int:
        """Messages in every dead-letter queue."""
        names = [spec.dlq_name for spec in self.settings.topology.queues]
        return sum(dlq_depths(self.clients.sqs, names).values())

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until no queue holds a message (the previous test's traffic is over), so a
        test's figures are its own."""
        names = [spec.name for spec in self.settings.topology.queues]
        wait_for(
            lambda: not any(dlq_depths(self.clients.sqs, names).values()),
            timeout,
            "every queue to be empty",
            interval=0.5,
        )


@contextlib.contextmanager
def own_stack(
    tmp_path_factory: pytest.TempPathFactory, *, proxy: bool = False, **env: str
) -> Iterator[FaultStack]:
    """Start an emulator (behind a FaultProxy if asked) and a stack on it."""
    emulator = start_localstack(tmp_path_factory.mktemp("fault-localstack"), FAULT_TOPOLOGY)
    fault_proxy = FaultProxy(emulator.port) if proxy else None
    endpoint = fault_proxy.endpoint_url if fault_proxy else emulator.endpoint_url
    stack_env = stack_environment(
        endpoint, tmp_path_factory.mktemp("fault-data"), **FAULT_TOPOLOGY, **FAULT_PROGRAMS, **env
    )
    stack = SupervisedStack(tmp_path_factory.mktemp("fault-stack"), stack_env)
    try:
        stack.start()
        settings = settings_for(stack_env)
        yield FaultStack(
            emulator=emulator,
            stack=stack,
            env=stack_env,
            settings=settings,
            clients=make_clients(
                settings.model_copy(update={"aws_endpoint_url": emulator.endpoint_url})
            ),
            ledger=Ledger(Path(stack_env["DATA_DIR"]), emulator.endpoint_url),
            api=Api(stack.base_url),
            proxy=fault_proxy,
        )
    finally:
        stack.stop()
        if fault_proxy:
            fault_proxy.close()
        emulator.stop()


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[Figures], None]:
    """Keep a test's figures for the summary (and print them with the test's output)."""

    def keep(figures: Figures) -> None:
        print(figures.line())
        request.config.stash.setdefault(FIGURES, []).append(figures)

    return keep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print every fault test's figures at the end of the run."""
    figures = terminalreporter.config.stash.get(FIGURES, [])
    if figures:
        terminalreporter.section("fault figures")
        for f in figures:
            terminalreporter.write_line(f.line())


@pytest.fixture(scope="package")
def crash_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """The stack the crash and dead-letter tests share: four handler threads per service,
    and no republishing, so any order the runtime lost would stay lost."""
    with own_stack(
        tmp_path_factory, CONSUMER_CONCURRENCY="4", OUTBOX_REPUBLISH_AFTER="0"
    ) as fault_stack:
        yield fault_stack
