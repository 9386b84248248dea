"""Metrics: the shared folder's clean-up, the consumer middleware, the dashboard's totals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from pubsub_supervisor import metrics
from pubsub_supervisor.runtime import Message
from pubsub_supervisor.runtime.metrics import AGE_WINDOW_SECONDS, MetricsMiddleware


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_prepare_drops_files_of_processes_that_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "metrics"
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(folder))
    folder.mkdir()
    mine = folder / f"counter_{os.getpid()}.db"
    gone = folder / f"counter_{dead_pid()}.db"
    alive = folder / f"histogram_{os.getppid()}.db"
    # A live pid whose file predates the process: an earlier run that used the same pid.
    reused = folder / f"gauge_livemax_{os.getppid()}.db"
    other = folder / "notes.txt"
    for path in (mine, gone, alive, reused, other):
        path.write_bytes(b"x")
    started = metrics.process_start_time(os.getppid())
    assert started is not None
    os.utime(reused, (started - 60, started - 60))

    metrics.prepare()

    assert sorted(p.name for p in folder.iterdir()) == sorted([mine.name, alive.name, other.name])


def test_prepare_does_nothing_without_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    metrics.prepare()
    assert metrics.multiproc_dir() is None


def message(sent_seconds_ago: float) -> Message:
    sent = int((time.time() - sent_seconds_ago) * 1000)
    return Message("m", "r", "{}", attributes={"SentTimestamp": str(sent)})


def test_middleware_counts_and_times_by_program_and_queue() -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    middleware = MetricsMiddleware("email_service", queue)

    middleware.after_receive(queue, 3)
    middleware.before_process(message(2.0))
    middleware.after_process(message(2.0), 0.05, None)
    middleware.after_process(message(2.0), 0.10, RuntimeError("boom"))
    middleware.after_retry(message(2.0), 4, "boom")
    middleware.after_dead_letter(message(2.0), "poison")

    totals = metrics.consumer_totals(metrics.registry())[queue]
    assert totals == metrics.ConsumerTotals(
        program="email_service", received=3, processed=1, failed=1, retried=1, dead_lettered=1
    )
    registry = metrics.registry()
    labels = {"program": "email_service", "queue": queue}
    assert registry.get_sample_value("pubsub_handler_duration_seconds_count", labels) == 2
    age = registry.get_sample_value("pubsub_message_age_seconds_sum", labels)
    assert age is not None
    assert 1.9 <= age < 10
    oldest = registry.get_sample_value("pubsub_oldest_message_age_seconds", labels)
    assert oldest is not None
    assert 1.9 <= oldest < 10


def test_oldest_age_covers_the_last_minute_only() -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    middleware = MetricsMiddleware("inventory_service", queue)
    start = 1000.0

    middleware.observe_age(30.0, start)
    middleware.observe_age(2.0, start + 10)

    assert middleware.refresh(start + 20) == 30.0
    assert middleware.refresh(start + AGE_WINDOW_SECONDS + 1) == 2.0
    assert middleware.refresh(start + AGE_WINDOW_SECONDS + 11) == 0.0


def test_consumer_totals_add_up_processes() -> None:
    registry = CollectorRegistry()
    processed = Counter(
        "pubsub_messages_processed", "x", ["program", "queue", "pid"], registry=registry
    )
    processed.labels("web_worker", "w", "1").inc(2)
    processed.labels("web_worker", "w", "2").inc(3)

    totals = metrics.consumer_totals(registry)

    assert totals["w"].processed == 5
    assert totals["w"].program == "web_worker"
