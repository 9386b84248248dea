"""The one program runner: every program (the web's worker, each service) starts here.

`run_program` configures logs and metrics from the settings, makes the clients, builds
what the program runs (consumers and other loops, each with `run()` and `stop()`), and
hands them to `run_parts`, the one place SIGTERM/SIGINT are handled: a signal stops every
part, and each drains. `consumer_for` assembles a consumer of one of the topology's
queues from the settings.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn, Protocol

from pubsub_supervisor import logs, metrics, tracing
from pubsub_supervisor.clients import AwsClients, make_clients, queue_url, until_reachable
from pubsub_supervisor.errors import ConfigError
from pubsub_supervisor.runtime import Consumer, ConsumerConfig, Handler, exit_after_drain
from pubsub_supervisor.runtime.metrics import MetricsMiddleware
from pubsub_supervisor.runtime.middleware import Middleware
from pubsub_supervisor.runtime.retries import DeadLetterHook
from pubsub_supervisor.settings import Settings

log = logging.getLogger(__name__)

#: Exit codes. supervisord restarts a program whatever its code; one that keeps exiting
#: within startsecs (a configuration error does) goes FATAL, and the fatal_exit listener
#: then stops the container.
EXIT_OK = 0
#: A part of the program failed while running.
EXIT_FAILURE = 1
#: A setting is missing or wrong (the log line says which).
EXIT_CONFIG = 2

#: Longest wait for every part to drain after a signal; below the consumers' programs'
#: stopwaitsecs in supervisord.conf (15), above a consumer's own longest stop.
STOP_SECONDS = 14.0

#: Connections beyond the consumer's handler and poller threads (ackers, heartbeat,
#: publishes, companion consumers).
EXTRA_CONNECTIONS = 8


class Part(Protocol):
    """Something a program runs: `run()` until `stop()`, then return."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


Build = Callable[[Settings, AwsClients], Sequence[Part]]


def consumer_for(
    settings: Settings,
    clients: AwsClients,
    consumer_name: str,
    handler: Handler,
    *,
    middleware: Sequence[Middleware] = (),
    on_dead_letter: DeadLetterHook | None = None,
    **overrides: Any,
) -> Consumer:
    """A consumer of the topology's queue for `consumer_name`, configured from the
    settings (`overrides`: ConsumerConfig fields), with the metrics middleware; waits
    until the queue can be found."""
    spec = settings.topology.queue_for(consumer_name)
    url = until_reachable(lambda: queue_url(clients, spec.name), f"queue {spec.name}")
    config = ConsumerConfig(
        concurrency=settings.consumer_concurrency,
        pollers=settings.consumer_pollers,
        wait_seconds=settings.consumer_wait_seconds,
        visibility_timeout=spec.visibility_timeout,
    )
    return Consumer(
        clients.sqs,
        url,
        handler,
        config=dataclasses.replace(config, **overrides),
        middleware=[
            MetricsMiddleware(settings.program_name, spec.name),
            tracing.SpanEvents(),
            *middleware,
        ],
        on_dead_letter=on_dead_letter,
    )


def run_program(
    program: str, build: Build, settings: Settings | None = None, *, pool: int | None = None
) -> int:
    """Run a program until SIGTERM/SIGINT and return its exit code; `program` names it in
    the logs when the settings do not (PROGRAM_NAME)."""
    try:
        settings = settings or Settings()
        logs.configure(settings.program_name or program, settings.log_level)
        metrics.prepare()
        tracing.init(settings.program_name or program)
        clients = make_clients(
            settings,
            pool=pool
            or settings.consumer_concurrency + settings.consumer_pollers + EXTRA_CONNECTIONS,
        )
        parts = build(settings, clients)
    except ConfigError as error:
        log.critical("configuration error", extra={"error": str(error)})
        return EXIT_CONFIG
    code = run_parts(parts)
    # The program exits without the interpreter's teardown (exit_after_drain).
    tracing.flush()
    return code


def run_parts(parts: Sequence[Part], *, stop_seconds: float = STOP_SECONDS) -> int:
    """Run every part on its own thread until a signal (or until one part ends), then
    stop them all and wait up to `stop_seconds` for them to drain."""
    stop = threading.Event()
    failed: list[str] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
        stop.set()

    def run(part: Part) -> None:
        try:
            part.run()
        except Exception:
            log.exception("program part failed, stopping", extra={"part": _name(part)})
            failed.append(_name(part))
        finally:
            # A part that ends on its own ends the program: supervisord restarts it whole.
            stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    threads = [
        threading.Thread(target=run, args=(part,), name=_name(part), daemon=True) for part in parts
    ]
    try:
        for thread in threads:
            thread.start()
        while not stop.wait(0.5):
            pass
        for part in parts:
            part.stop()
        deadline = time.monotonic() + stop_seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        late = [thread.name for thread in threads if thread.is_alive()]
        if late:
            log.warning("parts still running after the drain time", extra={"parts": late})
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_FAILURE if failed else EXIT_OK


def main(program: str, build: Build) -> NoReturn:
    """Entry point of a program: run it, then exit with its code right after the drain."""
    exit_after_drain(run_program(program, build))


def _name(part: Part) -> str:
    queue = getattr(part, "queue_name", None)
    return f"{type(part).__name__}-{queue}" if queue else type(part).__name__


__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "STOP_SECONDS",
    "Part",
    "consumer_for",
    "exit_after_drain",
    "main",
    "run_parts",
    "run_program",
]
