"""Every contender and setting the benchmark runs, and how to pre-fill and start each."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.drain.contenders import raw
from bench.drain.contenders.common import WorkerEnv

#: Threads sending the pre-fill; its speed is not measured, only its result.
PREFILL_THREADS = 4

Events = list[dict[str, Any]]


@dataclass(frozen=True)
class Spec:
    """One contender with one setting: how to fill its queue and start its worker."""

    contender: str
    setting: str
    #: What the setting amounts to, for the table.
    summary: str
    prefill: Callable[[WorkerEnv, Events], None]
    command: Callable[[WorkerEnv], list[str]]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """contender/setting, unique across specs."""
        return f"{self.contender}/{self.setting}"


def in_parallel(send: Callable[[WorkerEnv, Events], None]) -> Callable[[WorkerEnv, Events], None]:
    """Split the pre-fill over a few threads, each sending its share with `send`."""

    def prefill(env: WorkerEnv, events: Events) -> None:
        shares = [events[i::PREFILL_THREADS] for i in range(PREFILL_THREADS)]
        with ThreadPoolExecutor(PREFILL_THREADS) as pool:
            for future in [pool.submit(send, env, share) for share in shares if share]:
                future.result()

    return prefill


def _bench_worker(kind: str) -> Callable[[WorkerEnv], list[str]]:
    return lambda env: [sys.executable, "-m", "bench.drain.worker", kind]


def _celery_prefill(env: WorkerEnv, events: Events) -> None:
    from bench.drain.contenders.celery_app import TASK_NAME, make_app

    app = make_app(env)
    with app.producer_or_acquire() as producer:
        for event in events:
            app.send_task(TASK_NAME, args=[event], producer=producer)


def _celery_command(*args: str) -> Callable[[WorkerEnv], list[str]]:
    def command(env: WorkerEnv) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.drain.contenders.celery_worker",
            "worker",
            "--queues",
            env.queue_name,
            "--loglevel",
            "WARNING",
            *args,
        ]

    return command


def _dramatiq_prefill(env: WorkerEnv, events: Events) -> None:
    from bench.drain.contenders.dramatiq_app import make_broker

    _broker, actor = make_broker(env)
    for event in events:
        actor.send(event)


def _dramatiq_command(*args: str) -> Callable[[WorkerEnv], list[str]]:
    return lambda env: [
        sys.executable,
        "-m",
        "dramatiq",
        "bench.drain.contenders.dramatiq_worker",
        *args,
    ]


def _sqs_workers_prefill(env: WorkerEnv, events: Events) -> None:
    from bench.drain.contenders import sqs_workers_app

    sqs_workers_app.prefill(env, events)


raw_prefill = in_parallel(raw.prefill)

SPECS: Sequence[Spec] = (
    Spec(
        "naive",
        "1 thread",
        "ReceiveMessage(1) + DeleteMessage",
        raw_prefill,
        _bench_worker("naive"),
    ),
    Spec(
        "batched",
        "1 thread",
        "ReceiveMessage(10, wait 20 s) + DeleteMessageBatch",
        raw_prefill,
        _bench_worker("batched"),
        {"threads": 1},
    ),
    Spec(
        "batched",
        "4 threads",
        "same, 4 threads on one client",
        raw_prefill,
        _bench_worker("batched"),
        {"threads": 4},
    ),
    Spec(
        "celery",
        "default",
        "prefork x CPUs, prefetch x4, polling_interval 1 s",
        in_parallel(_celery_prefill),
        _celery_command(),
    ),
    Spec(
        "celery",
        "tuned",
        "threads pool x8, prefetch x4, polling_interval 0",
        in_parallel(_celery_prefill),
        _celery_command("--pool", "threads", "--concurrency", "8"),
        {"transport_options": {"polling_interval": 0}},
    ),
    Spec(
        "dramatiq",
        "default",
        "processes x CPUs, 8 threads each",
        in_parallel(_dramatiq_prefill),
        _dramatiq_command(),
    ),
    Spec(
        "dramatiq",
        "tuned",
        "processes x CPUs, 16 threads each",
        in_parallel(_dramatiq_prefill),
        _dramatiq_command("--threads", "16"),
    ),
    Spec(
        "sqs-workers",
        "default",
        "1 process_queue loop, one job at a time",
        in_parallel(_sqs_workers_prefill),
        _bench_worker("sqs-workers"),
    ),
    Spec(
        "sqs-workers",
        "tuned",
        "4 processes, batch reads of 10",
        in_parallel(_sqs_workers_prefill),
        _bench_worker("sqs-workers"),
        {"processes": 4, "batch_size": 10},
    ),
    Spec(
        "runtime",
        "default",
        "ConsumerConfig(): 16 threads, 2 pollers",
        raw_prefill,
        _bench_worker("runtime"),
        {"config": {}},
    ),
    Spec(
        "runtime",
        "tuned",
        "ConsumerConfig(concurrency=32, pollers=4)",
        raw_prefill,
        _bench_worker("runtime"),
        {"config": {"concurrency": 32, "pollers": 4}},
    ),
)

#: The names `--only` accepts.
CONTENDERS: tuple[str, ...] = tuple(dict.fromkeys(spec.contender for spec in SPECS))


def select(only: Sequence[str] | None) -> list[Spec]:
    """The specs of the named contenders (all when `only` is empty)."""
    if not only:
        return list(SPECS)
    unknown = sorted(set(only) - set(CONTENDERS))
    if unknown:
        raise ValueError(f"unknown contender(s) {unknown}; choose from {list(CONTENDERS)}")
    return [spec for spec in SPECS if spec.contender in only]
