"""Prometheus metrics of every program, gathered into one scrape target.

Under supervisord every program shares one folder, PROMETHEUS_MULTIPROC_DIR (set in
supervisord.conf, under PUBSUB_RUN_DIR): prometheus_client then keeps each process's
values in a file there, and the web's GET /metrics adds them up. Every series carries the
program's name in its `program` label. Without that variable (a single process, unit
tests) the values live in memory and /metrics shows the web's own.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

#: prometheus_client reads this variable itself, when it is first imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# -- web -------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "pubsub_http_requests",
    "HTTP requests answered, by route and status.",
    ["program", "method", "endpoint", "status"],
)
HTTP_LATENCY = Histogram(
    "pubsub_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["program", "method", "endpoint"],
    buckets=_SECONDS_BUCKETS,
)
OUTBOX_PUBLISHED = Counter(
    "pubsub_outbox_published", "Events the outbox relay published to SNS.", ["program"]
)
OUTBOX_FAILURES = Counter(
    "pubsub_outbox_publish_failures",
    "Events SNS refused or could not be reached for (they stay in the outbox).",
    ["program"],
)

# -- consumers (services and the web's results consumer) -------------------------------
_CONSUMER = ["program", "queue"]
RECEIVED = Counter("pubsub_messages_received", "Messages received from SQS.", _CONSUMER)
PROCESSED = Counter("pubsub_messages_processed", "Messages the handler completed.", _CONSUMER)
FAILED = Counter("pubsub_messages_failed", "Handler runs that raised.", _CONSUMER)
RETRIED = Counter("pubsub_messages_retried", "Messages put back for a later retry.", _CONSUMER)
DEAD_LETTERED = Counter(
    "pubsub_messages_dead_lettered", "Messages moved to the dead-letter queue.", _CONSUMER
)
HANDLER_LATENCY = Histogram(
    "pubsub_handler_duration_seconds",
    "Time a handler took, successful or not.",
    _CONSUMER,
    buckets=_SECONDS_BUCKETS,
)
MESSAGE_AGE = Histogram(
    "pubsub_message_age_seconds",
    "Age of a message (since SQS accepted it) when its handler started.",
    _CONSUMER,
    buckets=_AGE_BUCKETS,
)
OLDEST_MESSAGE_AGE = Gauge(
    "pubsub_oldest_message_age_seconds",
    "Age of the oldest message handled in the last minute (0 when none was).",
    _CONSUMER,
    multiprocess_mode="livemax",
)

#: Consumer counters as the dashboard shows them, by sample name.
CONSUMER_COUNTERS = {
    "received": "pubsub_messages_received_total",
    "processed": "pubsub_messages_processed_total",
    "failed": "pubsub_messages_failed_total",
    "retried": "pubsub_messages_retried_total",
    "dead_lettered": "pubsub_messages_dead_lettered_total",
}


def multiproc_dir() -> Path | None:
    """The shared metrics folder, when the programs run together."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare() -> None:
    """Create the shared folder and drop files of processes that are gone (call at start)."""
    # A file's name holds its writer's pid. A dead pid, or a pid reused by a process that
    # started after the file was last written (a restarted container numbers its processes
    # the same way), means the file belongs to an earlier run, whose totals must not mix
    # with this one's. Runs before this process writes its first value.
    folder = multiproc_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("*.db"):
        match = re.search(r"_(\d+)\.db$", path.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        with contextlib.suppress(FileNotFoundError):
            if _is_stale(path.stat().st_mtime, pid):
                path.unlink()


def _is_stale(written_at: float, pid: int) -> bool:
    started = process_start_time(pid)
    # The one-second margin covers clock granularity; a process writes after it starts.
    return started is None or written_at < started - 1


def process_start_time(pid: int) -> float | None:
    """When a process started (epoch seconds), or None when it does not exist."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, IndexError, StopIteration, ValueError):
        return 0.0  # no /proc: alive is all we know
    # Field 22 of /proc/<pid>/stat (index 19 after the command) is the start, in ticks.
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """What /metrics exposes: every program's values, plus collectors read on scrape."""
    folder = multiproc_dir()
    if folder is None:
        target = CollectorRegistry()
        target.register(_Forward(REGISTRY))
    else:
        target = CollectorRegistry()
        MultiProcessCollector(target, str(folder))  # type: ignore[no-untyped-call]
    for collector in extra:
        target.register(collector)
    return target


class _Forward(Collector):
    """Exposes another registry's metrics (the in-memory default one)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[object]:  # type: ignore[override]
        """Everything the source has."""
        return self.source.collect()


@dataclass
class ConsumerTotals:
    """One queue's consumer counters, summed over its program's processes."""

    program: str = ""
    received: float = 0.0
    processed: float = 0.0
    failed: float = 0.0
    retried: float = 0.0
    dead_lettered: float = 0.0


def consumer_totals(source: CollectorRegistry) -> dict[str, ConsumerTotals]:
    """Consumer counters by queue name."""
    wanted = {sample: key for key, sample in CONSUMER_COUNTERS.items()}
    totals: dict[str, ConsumerTotals] = {}
    for family in source.collect():
        for sample in family.samples:
            key = wanted.get(sample.name)
            if key is None:
                continue
            row = totals.setdefault(sample.labels.get("queue", ""), ConsumerTotals())
            row.program = sample.labels.get("program", row.program)
            setattr(row, key, getattr(row, key) + sample.value)
    return totals
