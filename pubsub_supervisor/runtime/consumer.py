"""The consumer runtime: long polling, a thread pool of handlers, batched acknowledgement,
visibility heartbeat, per-message retry and dead-lettering, and a graceful drain on SIGTERM.

It knows nothing about orders: a handler is a function of one `Message` that returns on
success and raises on failure (`PoisonMessage`: never retry; `RetryLater`: retry after a
delay; anything else: retry with backoff until the queue's `maxReceiveCount`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from pubsub_supervisor import logs
from pubsub_supervisor.errors import PoisonMessage, RetryLater
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.middleware import Middleware

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

Handler = Callable[[Message], None]
DeadLetterHook = Callable[[Message, str], None]

#: Largest batch SQS accepts for receive, delete and change-visibility calls.
SQS_BATCH = 10
#: On stop: time kept for the last deletes even when handlers used the whole drain time.
ACK_FLUSH_SECONDS = 3.0
#: Longest visibility timeout SQS accepts (12 hours).
MAX_VISIBILITY = 43200
#: Longest pause between receive attempts while the endpoint fails: once it is back,
#: consumers resume within this.
MAX_POLL_BACKOFF = 10.0


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


@dataclass
class ConsumerStats:
    """Counters since start (also exposed as metrics)."""

    received: int = 0
    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    released: int = 0
    #: Visibility extensions sent by the heartbeat.
    extended: int = 0


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
        self.config = config or ConsumerConfig()
        self.middleware = tuple(middleware)
        self.on_dead_letter = on_dead_letter
        self.stats = ConsumerStats()

        self._stopping = threading.Event()
        self._stopped = threading.Event()
        #: Messages for the handler threads; None tells one thread to exit.
        self._work: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._acks: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._lock = threading.Condition()
        #: Every message received and not yet acked or released, by receipt handle,
        #: with the monotonic time its visibility ends (the heartbeat extends it).
        self._in_hand: dict[str, tuple[Message, float]] = {}
        #: Messages asked for by receives in flight (counted against the capacity).
        self._reserved = 0
        #: Receipt handles of messages whose handler has started (never released on stop).
        self._started: set[str] = set()
        self._active_events: set[str] = set()
        #: Serialises visibility changes, so a heartbeat never overwrites a retry delay or
        #: a release (visibility 0) that was decided after it read the messages in hand.
        self._visibility_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._gather_lock = threading.Lock()
        self._dlq_url: str | None = None
        self._max_receives: int | None = self.config.max_receive_count

    # -- life cycle -------------------------------------------------------------------

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Consume until `stop()` (or SIGTERM/SIGINT), then drain and return."""
        if install_signal_handlers:
            self._install_signal_handlers()
        self._load_redrive_policy()
        threads = self._start_threads()
        log.info(
            "consumer started",
            extra={"queue": self.queue_name, "concurrency": self.config.concurrency},
        )
        while not self._stopping.wait(0.5):
            pass
        self._drain(threads)
        self._stopped.set()

    def stop(self) -> None:
        """Ask the consumer to stop polling and drain (thread- and signal-safe)."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()

    @property
    def stopping(self) -> bool:
        """True once stop was asked for."""
        return self._stopping.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until `run()` has drained and returned."""
        return self._stopped.wait(timeout)

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _start_threads(self) -> dict[str, list[threading.Thread]]:
        def spawn(name: str, target: Callable[[], None], count: int) -> list[threading.Thread]:
            threads = [
                threading.Thread(target=target, name=f"{name}-{i}", daemon=True)
                for i in range(count)
            ]
            for thread in threads:
                thread.start()
            return threads

        return {
            "pollers": spawn("poller", self._poll_loop, self.config.pollers),
            "workers": spawn("worker", self._work_loop, self.config.concurrency),
            "acker": spawn("acker", self._ack_loop, self.config.pollers),
            "heartbeat": spawn("heartbeat", self._heartbeat_loop, 1)
            if self.config.heartbeat
            else [],
        }

    def _drain(self, threads: dict[str, list[threading.Thread]]) -> None:
        """Stop polling, hand back what was not started, let handlers finish, flush acks."""
        started = time.monotonic()
        deadline = started + self.config.drain_seconds
        # A long poll in flight cannot be cancelled; under load it returns at once, and
        # the poller releases what it brings (see _poll_loop).
        _join(threads["pollers"], self.config.poll_grace_seconds)
        # Received but not started: back to the queue now, for the next consumer.
        self._release(_take_all(self._work))
        # Handler threads block on the queue (no idle wake-ups); one None ends each.
        for _ in threads["workers"]:
            self._work.put(None)
        _join(threads["workers"], max(0.0, deadline - time.monotonic()))
        for _ in threads["acker"]:
            self._acks.put(None)
        _join(threads["acker"], max(ACK_FLUSH_SECONDS, deadline - time.monotonic()))
        # Anything a poller queued after the first release (it raced the stop).
        with self._lock:
            stranded = [m for h, (m, _) in self._in_hand.items() if h not in self._started]
        self._release(stranded)
        with self._lock:
            unfinished = len(self._in_hand)
        log.info(
            "consumer stopped",
            extra={
                "queue": self.queue_name,
                # Handlers still running past the drain time: their messages come back
                # when the visibility ends (the heartbeat stops with this process).
                "unfinished": unfinished,
                "drain_seconds": round(time.monotonic() - started, 3),
                **vars(self.stats),
            },
        )

    def _load_redrive_policy(self) -> None:
        """Find the dead-letter queue and maxReceiveCount from the queue's RedrivePolicy."""
        delay = 1.0
        while not self._stopping.is_set():
            try:
                # No "Attributes" at all when the queue has none of those asked for.
                attrs = self.sqs.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
                ).get("Attributes", {})
                break
            except Exception as error:
                log.warning(
                    "queue not reachable yet, retrying",
                    extra={"queue": self.queue_name, "error": str(error), "retry_in": delay},
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_POLL_BACKOFF)
        else:
            return
        policy = json.loads(attrs.get("RedrivePolicy", "null") or "null")
        if not policy:
            log.warning("queue has no RedrivePolicy: failures retry until retention ends")
            return
        if self._max_receives is None:
            self._max_receives = int(policy["maxReceiveCount"])
        dlq_name = policy["deadLetterTargetArn"].rsplit(":", 1)[-1]
        self._dlq_url = self.sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]

    # -- polling ----------------------------------------------------------------------

    def _capacity(self) -> int:
        """Messages that may be received now: concurrency plus one batch of prefetch."""
        return (
            self.config.concurrency + self.config.batch_size - len(self._in_hand) - self._reserved
        )

    def _poll_loop(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            with self._lock:
                # Receive only when a whole batch fits: a ReceiveMessage costs about the
                # same for 1 message as for 10, so partial ones waste the broker's time.
                while self._capacity() < self.config.batch_size and not self._stopping.is_set():
                    self._lock.wait(1)
                want = self.config.batch_size
                self._reserved += want
            if self._stopping.is_set():
                self._unreserve(want)
                return
            try:
                response = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=want,
                    WaitTimeSeconds=self.config.wait_seconds,
                    VisibilityTimeout=self.config.visibility_timeout,
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                    MessageAttributeNames=["All"],
                )
            except Exception as error:
                self._unreserve(want)
                log.warning(
                    "receive failed, backing off",
                    extra={"queue": self.queue_name, "error": str(error), "retry_in": backoff},
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_POLL_BACKOFF)
                continue
            backoff = 0.5
            messages = [Message.from_sqs(raw) for raw in response.get("Messages", [])]
            deadline = time.monotonic() + self.config.visibility_timeout
            with self._lock:
                self._reserved -= want
                for message in messages:
                    self._in_hand[message.receipt_handle] = (message, deadline)
                if len(messages) < want:
                    self._lock.notify_all()
            if not messages:
                continue
            self._count("received", len(messages))
            self._emit("after_receive", self.queue_name, len(messages))
            if self._stopping.is_set():
                self._release(messages)
                return
            for message in messages:
                self._work.put(message)

    def _unreserve(self, count: int) -> None:
        with self._lock:
            self._reserved -= count
            self._lock.notify_all()

    # -- handling ---------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            message = self._work.get()
            if message is None:
                return
            if self._stopping.is_set():
                self._release([message])
                return
            self._process(message)

    def _process(self, message: Message) -> None:
        with self._lock:
            duplicate = message.event_id in self._active_events
            if not duplicate:
                self._active_events.add(message.event_id)
                self._started.add(message.receipt_handle)
        if duplicate:
            # The same event is being handled by another thread right now (a duplicate in
            # one batch, or a redelivery): let that one finish, then see this one again.
            self._retry(message, max(self.config.backoff_base, 1), "same event in progress")
            return
        try:
            with logs.bound(
                message_id=message.message_id,
                event_id=message.event_id,
                trace_id=message.trace_id,
            ):
                self._run_handler(message)
        finally:
            with self._lock:
                self._active_events.discard(message.event_id)

    def _run_handler(self, message: Message) -> None:
        self._emit("before_process", message)
        started = time.perf_counter()
        try:
            self.handler(message)
        except PoisonMessage as error:
            self._after_process(message, started, error)
            self._dead_letter(message, f"poison: {error}")
        except RetryLater as error:
            self._after_process(message, started, error)
            self._retry(message, error.delay or self._backoff(message), str(error))
        except Exception as error:
            self._after_process(message, started, error)
            self._count("failed")
            reason = f"{type(error).__name__}: {error}"
            if self._max_receives is not None and message.receive_count >= self._max_receives:
                self._dead_letter(message, f"failed {message.receive_count} times: {reason}")
            else:
                log.warning(
                    "handler failed, will retry",
                    exc_info=True,
                    extra={"receive_count": message.receive_count},
                )
                self._retry(message, self._backoff(message), reason)
        else:
            self._after_process(message, started, None)
            self._count("processed")
            self._acks.put(message)

    def _after_process(self, message: Message, started: float, error: BaseException | None) -> None:
        self._emit("after_process", message, time.perf_counter() - started, error)

    def _backoff(self, message: Message) -> int:
        return retry_delay(message.receive_count, self.config.backoff_base, self.config.backoff_cap)

    def _retry(self, message: Message, delay: int, reason: str) -> None:
        """Put the message back, visible again after `delay` seconds."""
        self._count("retried")
        with self._visibility_lock:
            self._forget([message])
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message.receipt_handle,
                    VisibilityTimeout=min(delay, MAX_VISIBILITY),
                )
            except Exception as error:
                # It reappears when its current visibility ends: later, but not lost.
                log.warning("could not set retry delay", extra={"error": str(error)})
        self._emit("after_retry", message, delay, reason)

    def _dead_letter(self, message: Message, reason: str) -> None:
        """Move the message to the DLQ with the reason, then delete it here."""
        if self._dlq_url is None:
            log.error("cannot dead-letter: queue has no DLQ", extra={"reason": reason})
            self._retry(message, self.config.backoff_cap, reason)
            return
        attributes: dict[str, Any] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in message.message_attributes.items()
            if value
        }
        attributes |= {
            "dead_letter_reason": {"DataType": "String", "StringValue": reason[:1000]},
            "source_queue": {"DataType": "String", "StringValue": self.queue_name},
            "source_message_id": {"DataType": "String", "StringValue": message.message_id},
            "receive_count": {"DataType": "Number", "StringValue": str(message.receive_count)},
        }
        try:
            self.sqs.send_message(
                QueueUrl=self._dlq_url,
                MessageBody=message.body or "(empty)",
                MessageAttributes=dict(list(attributes.items())[:10]),
            )
        except Exception as error:
            log.error("could not dead-letter, will retry", extra={"error": str(error)})
            self._retry(message, self._backoff(message), reason)
            return
        self._count("dead_lettered")
        log.error("message dead-lettered", extra={"reason": reason, "queue": self.queue_name})
        self._acks.put(message)
        self._emit("after_dead_letter", message, reason)
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(message, reason)
            except Exception:
                log.exception("dead-letter hook failed")

    # -- acknowledging, releasing, heartbeat --------------------------------------------

    def _forget(self, messages: Iterable[Message]) -> None:
        """No longer in hand: the heartbeat stops extending them, pollers may take more."""
        with self._lock:
            for message in messages:
                self._in_hand.pop(message.receipt_handle, None)
                self._started.discard(message.receipt_handle)
            self._lock.notify_all()

    def _count(self, counter: str, n: int = 1) -> None:
        with self._stats_lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + n)

    def _ack_loop(self) -> None:
        done = False
        while not done:
            # One thread gathers at a time, so batches fill up; the other sends its own
            # batch meanwhile, so a slow DeleteMessageBatch does not hold up the next.
            with self._gather_lock:
                batch, done = self._gather()
            if batch:
                self._delete(batch)

    def _gather(self) -> tuple[list[Message], bool]:
        """Up to one SQS batch of messages to delete, and whether a stop was signalled."""
        first = self._acks.get()
        if first is None:
            return [], True
        batch = [first]
        linger_until = time.monotonic() + self.config.ack_linger_seconds
        # What is waiting, and, for a moment, what handlers working on the messages in
        # hand are about to add.
        while len(batch) < SQS_BATCH:
            try:
                more = self._acks.get_nowait()
            except queue.Empty:
                wait = linger_until - time.monotonic()
                if wait <= 0 or not self._more_acks_coming(len(batch)):
                    break
                try:
                    more = self._acks.get(timeout=wait)
                except queue.Empty:
                    break
            if more is None:
                return batch, True
            batch.append(more)
        return batch, False

    def _more_acks_coming(self, batched: int) -> bool:
        """True while messages in hand beyond the batch being gathered may still end in an
        ack (handlers running, or about to start); a lone message (a quiet queue) is then
        deleted without waiting."""
        with self._lock:
            return len(self._in_hand) > batched and not self._stopping.is_set()

    def _delete(self, batch: list[Message]) -> None:
        self._forget(batch)
        entries: list[Any] = [
            {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(batch)
        ]
        try:
            response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as error:
            # Undeleted messages come back after their visibility timeout; idempotent
            # handlers make the second delivery harmless.
            log.warning("delete failed", extra={"error": str(error), "count": len(batch)})
            return
        failed = {f["Id"] for f in response.get("Failed", [])}
        for i, message in enumerate(batch):
            if str(i) in failed:
                log.warning("delete failed", extra={"message_id": message.message_id})
            else:
                self._emit("after_ack", message)

    def _release(self, messages: Sequence[Message]) -> None:
        """Hand messages back for immediate redelivery (visibility 0)."""
        if not messages:
            return
        self._count("released", len(messages))
        with self._visibility_lock:
            self._forget(messages)
            self._change_visibility(messages, 0)

    def _change_visibility(self, messages: Sequence[Message], seconds: int) -> None:
        for start in range(0, len(messages), SQS_BATCH):
            chunk = messages[start : start + SQS_BATCH]
            entries: list[Any] = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
                for i, m in enumerate(chunk)
            ]
            try:
                response = self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
                for failure in response.get("Failed", []):
                    log.warning("visibility change refused", extra={"detail": failure})
            except Exception as error:
                log.warning("visibility change failed", extra={"error": str(error)})

    def _heartbeat_loop(self) -> None:
        visibility = self.config.visibility_timeout
        tick = max(0.2, min(5.0, visibility / 6))
        while not self._stopped.wait(tick):
            with self._visibility_lock:
                now = time.monotonic()
                with self._lock:
                    due = [m for m, ends in self._in_hand.values() if ends - now < visibility / 2]
                    for message in due:
                        self._in_hand[message.receipt_handle] = (message, now + visibility)
                if due:
                    self._change_visibility(due, visibility)
            if due:
                self._count("extended", len(due))
                log.debug("visibility extended", extra={"count": len(due)})

    def _emit(self, hook: str, *args: Any) -> None:
        for middleware in self.middleware:
            try:
                getattr(middleware, hook)(*args)
            except Exception:
                log.exception("middleware hook failed", extra={"hook": hook})


def exit_after_drain(code: int) -> NoReturn:
    """End the process right after `run()` drained: every delete, release and log line is
    out, so the interpreter's teardown (freeing every object; seconds on a loaded
    machine) is skipped, and a stop stays well inside supervisord's stopwaitsecs."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def retry_delay(receive_count: int, base: int, cap: int) -> int:
    """Seconds a failed message stays invisible: base * 2**(receives-1), at most `cap`."""
    exponent = min(max(receive_count, 1) - 1, 20)
    return int(min(cap, base * 2**exponent))


def _join(threads: Iterable[threading.Thread], timeout: float) -> None:
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
