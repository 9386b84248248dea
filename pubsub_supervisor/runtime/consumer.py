"""The consumer: a thread pool of handlers around small parts that each do one thing.

`Capacity` knows what is in hand; `Poller` threads receive into it; handler threads run
one message each; `Retries` is the retry and dead-letter policy; `AckBatcher` threads
delete what succeeded; `Heartbeat` keeps what is in hand invisible; `drain` hands back
what was not started and lets the rest finish. Middleware hooks see every step, and
`ConsumerStats` (one of them) counts.

It knows nothing about orders: a handler is a function of one `Message` that returns on
success and raises on failure (see `retries`). It installs no signal handlers: the
program runner (`pubsub_supervisor.program`) stops it.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from pubsub_supervisor import logs, tracing
from pubsub_supervisor.runtime.acks import AckBatcher
from pubsub_supervisor.runtime.capacity import Capacity
from pubsub_supervisor.runtime.heartbeat import Heartbeat
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.middleware import Hooks, Middleware
from pubsub_supervisor.runtime.poller import Poller
from pubsub_supervisor.runtime.retries import DeadLetterHook, Retries
from pubsub_supervisor.runtime.stats import ConsumerStats
from pubsub_supervisor.runtime.visibility import SQS_BATCH, Visibility

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

Handler = Callable[[Message], None]

#: On stop: time kept for the last deletes even when handlers used the whole drain time.
ACK_FLUSH_SECONDS = 3.0


@dataclass(frozen=True)
class ConsumerConfig:
    """How a consumer polls, how many handlers run at once, and how it retries."""

    #: Handler threads; the lever for I/O-bound handlers. At least one receive batch, so
    #: the next batch is received while the current one is handled.
    concurrency: int = 16
    #: Threads calling ReceiveMessage, and as many sending the deletes: two keep a call
    #: in flight while the other's answer is handled (idle, a poller is one long poll
    #: every `wait_seconds`).
    pollers: int = 2
    batch_size: int = SQS_BATCH
    #: Longest wait for a delete batch to fill while more handled messages are on their
    #: way: full batches mean fewer calls (each costs the client and the broker CPU).
    ack_linger_seconds: float = 0.02
    #: Longest a handled message waits for its delete to share a DeleteMessageBatch with
    #: the next ones of a steady stream (see AckBatcher); 0 deletes each at once unless
    #: more are in hand. Far below any visibility timeout (the heartbeat covers it anyway).
    ack_interval_seconds: float = 0.5
    #: Long-poll wait; 20 s keeps an idle consumer nearly free.
    wait_seconds: int = 20
    #: Visibility given on each heartbeat; should match the queue's VisibilityTimeout.
    visibility_timeout: int = 30
    heartbeat: bool = True
    #: Retry delay: base * 2**(receives-1), capped.
    backoff_base: int = 1
    backoff_cap: int = 300
    #: Receives after which a failing message is dead-lettered (None: the queue's RedrivePolicy).
    max_receive_count: int | None = None
    #: On stop: how long handlers in progress may take to finish.
    drain_seconds: float = 10.0
    #: On stop: how long to wait for a long poll in flight (its messages are handed back).
    poll_grace_seconds: float = 0.25

    @property
    def longest_stop(self) -> float:
        """Most seconds a stop takes: the poll grace, the drain, the last deletes."""
        return self.poll_grace_seconds + self.drain_seconds + ACK_FLUSH_SECONDS


class Consumer:
    """Consume one SQS queue with a pool of handler threads until stopped."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        handler: Handler,
        *,
        config: ConsumerConfig | None = None,
        middleware: Sequence[Middleware] = (),
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        self.handler = handler
        self.config = config = config or ConsumerConfig()
        # The counters: the first ConsumerStats given (the metrics middleware is one),
        # else a plain one; either way the only place messages are counted.
        stats = next((m for m in middleware if isinstance(m, ConsumerStats)), None)
        if stats is None:
            stats = ConsumerStats()
            middleware = (stats, *middleware)
        self.stats = stats
        self.middleware = tuple(middleware)
        self.hooks = Hooks(self.middleware)

        self._stopping = threading.Event()
        self._stopped = threading.Event()
        #: Messages for the handler threads; None tells one thread to exit.
        self._work: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self.capacity = Capacity(config.concurrency + config.batch_size)
        self.visibility = Visibility(sqs, queue_url, self.capacity, self.hooks)
        self.acks = AckBatcher(
            sqs,
            queue_url,
            capacity=self.capacity,
            hooks=self.hooks,
            stopping=self._stopping,
            linger_seconds=config.ack_linger_seconds,
            interval_seconds=config.ack_interval_seconds,
        )
        self.retries = Retries(
            sqs,
            queue_url,
            backoff_base=config.backoff_base,
            backoff_cap=config.backoff_cap,
            max_receive_count=config.max_receive_count,
            visibility=self.visibility,
            hooks=self.hooks,
            ack=self.acks.put,
            on_dead_letter=on_dead_letter,
        )
        self.poller = Poller(
            sqs,
            queue_url,
            batch_size=config.batch_size,
            wait_seconds=config.wait_seconds,
            visibility_timeout=config.visibility_timeout,
            capacity=self.capacity,
            visibility=self.visibility,
            hooks=self.hooks,
            deliver=self._work.put,
            stopping=self._stopping,
        )
        self.heartbeat = Heartbeat(self.visibility, config.visibility_timeout)

    @property
    def on_dead_letter(self) -> DeadLetterHook | None:
        """Called after a message was dead-lettered, with the reason."""
        return self.retries.on_dead_letter

    # -- life cycle -------------------------------------------------------------------

    def run(self) -> None:
        """Consume until `stop()`, then drain and return."""
        self.retries.load(self._stopping)
        threads = self._start_threads()
        log.info(
            "consumer started",
            extra={"queue": self.queue_name, "concurrency": self.config.concurrency},
        )
        while not self._stopping.wait(0.5):
            pass
        self._drain(threads)
        self.heartbeat.stop()
        self._stopped.set()

    def stop(self) -> None:
        """Ask the consumer to stop polling and drain (thread- and signal-safe)."""
        self._stopping.set()
        self.capacity.wake()

    @property
    def stopping(self) -> bool:
        """True once stop was asked for."""
        return self._stopping.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until `run()` has drained and returned."""
        return self._stopped.wait(timeout)

    def _start_threads(self) -> dict[str, list[threading.Thread]]:
        return {
            "pollers": spawn("poller", self.poller.run, self.config.pollers),
            "workers": spawn("worker", self._work_loop, self.config.concurrency),
            "acker": spawn("acker", self.acks.run, self.config.pollers),
            "heartbeat": spawn("heartbeat", self.heartbeat.run, 1) if self.config.heartbeat else [],
        }

    def _drain(self, threads: dict[str, list[threading.Thread]]) -> None:
        """Stop polling, hand back what was not started, let handlers finish, flush acks."""
        started = time.monotonic()
        deadline = started + self.config.drain_seconds
        # A long poll in flight cannot be cancelled; under load it returns at once, and
        # the poller releases what it brings.
        join(threads["pollers"], self.config.poll_grace_seconds)
        # Received but not started: back to the queue now, for the next consumer.
        self.visibility.release(_take_all(self._work))
        # Handler threads block on the queue (no idle wake-ups); one None ends each.
        for _ in threads["workers"]:
            self._work.put(None)
        join(threads["workers"], max(0.0, deadline - time.monotonic()))
        self.acks.stop(len(threads["acker"]))
        join(threads["acker"], max(ACK_FLUSH_SECONDS, deadline - time.monotonic()))
        # Anything a poller queued after the first release (it raced the stop).
        self.visibility.release(self.capacity.unstarted())
        log.info(
            "consumer stopped",
            extra={
                "queue": self.queue_name,
                # Handlers still running past the drain time: their messages come back
                # when the visibility ends (the heartbeat stops with this process).
                "unfinished": self.capacity.in_hand(),
                "drain_seconds": round(time.monotonic() - started, 3),
                **self.stats.snapshot(),
            },
        )

    # -- handling ---------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            message = self._work.get()
            if message is None:
                return
            if self._stopping.is_set():
                self.visibility.release([message])
                return
            self._process(message)

    def _process(self, message: Message) -> None:
        if not self.capacity.start(message):
            self.retries.in_progress(message)
            return
        try:
            with (
                tracing.consuming(message, self.queue_name),
                logs.bound(message_id=message.message_id, event_id=message.event_id),
            ):
                self._run_handler(message)
        finally:
            self.capacity.finish(message)

    def _run_handler(self, message: Message) -> None:
        self.hooks.emit("before_process", message)
        started = time.perf_counter()
        try:
            self.handler(message)
        except Exception as error:
            self.hooks.emit("after_process", message, time.perf_counter() - started, error)
            self.retries.after_failure(message, error)
        else:
            self.hooks.emit("after_process", message, time.perf_counter() - started, None)
            self.acks.put(message)


def exit_after_drain(code: int) -> NoReturn:
    """End the process right after `run()` drained: every delete, release and log line is
    out, so the interpreter's teardown (freeing every object; seconds on a loaded
    machine) is skipped, and a stop stays well inside supervisord's stopwaitsecs."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def spawn(name: str, target: Callable[[], None], count: int) -> list[threading.Thread]:
    """Start `count` daemon threads running `target`."""
    threads = [
        threading.Thread(target=target, name=f"{name}-{i}", daemon=True) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads


def join(threads: Iterable[threading.Thread], timeout: float) -> None:
    """Wait for the threads, `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _take_all(work: queue.SimpleQueue[Message | None]) -> list[Message]:
    taken: list[Message] = []
    while True:
        try:
            message = work.get_nowait()
        except queue.Empty:
            return taken
        if message is not None:
            taken.append(message)
