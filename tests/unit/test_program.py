"""The program runner: one signal mechanism, one drain, one exit-code convention."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from moto import mock_aws

from pubsub_supervisor import program
from pubsub_supervisor.clients import make_clients
from pubsub_supervisor.program import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, consumer_for, run_parts
from pubsub_supervisor.runtime.metrics import MetricsMiddleware
from pubsub_supervisor.settings import Settings


class Loop:
    """A part that runs until stopped, then takes `drain` seconds to finish."""

    def __init__(self, drain: float = 0.0, fail: bool = False) -> None:
        self.drain = drain
        self.fail = fail
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.finished = threading.Event()

    def run(self) -> None:
        self.started.set()
        if self.fail:
            raise RuntimeError("loop broke")
        self.stopped.wait()
        time.sleep(self.drain)
        self.finished.set()

    def stop(self) -> None:
        self.stopped.set()


def signal_when_started(parts: list[Loop], signum: int) -> None:
    """Send this process `signum` once every part runs (from another thread)."""

    def send() -> None:
        for part in parts:
            part.started.wait(5)
        os.kill(os.getpid(), signum)

    threading.Thread(target=send, daemon=True).start()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_part_and_waits_for_their_drain(signum: int) -> None:
    parts = [Loop(drain=0.3), Loop()]
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal_when_started(parts, signum)

    assert run_parts(parts) == EXIT_OK

    assert all(part.finished.is_set() for part in parts)
    # The program's handlers are gone once it returns.
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_failing_part_stops_the_others_and_the_program_fails() -> None:
    healthy = Loop()
    assert run_parts([Loop(fail=True), healthy]) == EXIT_FAILURE
    assert healthy.finished.is_set()


def test_the_wait_for_a_drain_is_bounded() -> None:
    slow = Loop(drain=30)
    signal_when_started([slow], signal.SIGTERM)
    started = time.monotonic()
    assert run_parts([slow], stop_seconds=0.5) == EXIT_OK
    assert time.monotonic() - started < 5
    assert not slow.finished.is_set()


def test_a_configuration_error_at_build_exits_with_exit_config(tmp_path: Path) -> None:
    script = (
        "from pubsub_supervisor.errors import ConfigError\n"
        "from pubsub_supervisor.program import main\n"
        "def build(settings, clients):\n"
        "    raise ConfigError('SHIPPING_CARRIER is not set: set it in .env')\n"
        "main('shipping_service', build)\n"
    )
    env = {**os.environ, "PROGRAM_NAME": "shipping_service", "AWS_ENDPOINT_URL": ""}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == EXIT_CONFIG == program.EXIT_CONFIG
    assert "configuration error" in done.stdout + done.stderr
    assert "SHIPPING_CARRIER is not set" in done.stdout + done.stderr


@pytest.mark.usefixtures("aws_env")
def test_consumer_for_configures_a_topology_queue_from_the_settings(settings: Settings) -> None:
    spec = settings.topology.queue_for("web")
    with mock_aws():
        clients = make_clients(settings)
        clients.sqs.create_queue(QueueName=spec.name)
        consumer = consumer_for(settings, clients, "web", lambda _m: None, concurrency=4)
    assert consumer.queue_name == spec.name
    assert consumer.config.concurrency == 4
    assert consumer.config.pollers == settings.consumer_pollers
    assert consumer.config.wait_seconds == settings.consumer_wait_seconds
    assert consumer.config.visibility_timeout == spec.visibility_timeout
    # The metrics middleware is the consumer's one set of counters.
    assert isinstance(consumer.stats, MetricsMiddleware)
