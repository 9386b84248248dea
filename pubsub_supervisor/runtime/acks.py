"""The ack batcher: deletes handled messages in batches of up to ten."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pubsub_supervisor.runtime.capacity import Capacity
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.middleware import Hooks
from pubsub_supervisor.runtime.visibility import SQS_BATCH

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)


#: How many of the recent gaps between acks a batch waits for the next one.
PATIENCE_GAPS = 3.0
#: Weight of the newest gap in the running average.
GAP_WEIGHT = 0.3


class AckBatcher:
    """Gathers messages to delete and sends one DeleteMessageBatch per gathering; threads
    run `run()` until `stop()`.

    A batch waits for more while its ten are not reached: briefly (`linger_seconds`) while
    messages in hand are about to be acked, and, while acks keep arriving, for the next one
    if it is due within a few of the recent gaps between acks, never past `interval_seconds`
    after its first message. So a steady trickle (ten orders a second) shares its deletes
    instead of paying one call per message, while the last messages of a burst (a drained
    backlog) and a lone message on a quiet queue go at once. A delete that waits costs
    nothing if the process dies meanwhile: the message comes back after its visibility
    timeout and the handler's idempotency makes the second delivery harmless.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        capacity: Capacity,
        hooks: Hooks,
        stopping: threading.Event,
        linger_seconds: float,
        interval_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.capacity = capacity
        self.hooks = hooks
        self.stopping = stopping
        self.linger_seconds = linger_seconds
        self.interval_seconds = interval_seconds
        self.clock = clock
        #: Messages to delete; None tells one thread to exit.
        self._acks: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._gather_lock = threading.Lock()
        #: When the last ack arrived, and the running average of the gaps between acks.
        self._last_put: float | None = None
        self._gap = float("inf")

    def put(self, message: Message) -> None:
        """Delete this message soon."""
        self.capacity.handled(message)
        now = self.clock()
        last, self._last_put = self._last_put, now
        if last is not None:
            gap = now - last
            self._gap = (
                gap
                if self._gap == float("inf")
                else (GAP_WEIGHT * gap + (1 - GAP_WEIGHT) * self._gap)
            )
        self._acks.put(message)

    def stop(self, threads: int) -> None:
        """Let `threads` running threads send what is queued, then return."""
        for _ in range(threads):
            self._acks.put(None)

    def run(self) -> None:
        """Gather and delete until stopped."""
        done = False
        while not done:
            # One thread gathers at a time, so batches fill up; the other sends its own
            # batch meanwhile, so a slow DeleteMessageBatch does not hold up the next.
            with self._gather_lock:
                batch, done = self.gather()
            if batch:
                self.delete(batch)

    def gather(self) -> tuple[list[Message], bool]:
        """Up to one SQS batch of messages to delete, and whether a stop was signalled."""
        first = self._acks.get()
        if first is None:
            return [], True
        batch = [first]
        opened = self.clock()
        # What is waiting, and, for a moment, what handlers working on the messages in
        # hand are about to add, or the next ack of a steady stream.
        while len(batch) < SQS_BATCH:
            try:
                more = self._acks.get_nowait()
            except queue.Empty:
                wait = self._wait(opened)
                if wait <= 0:
                    break
                try:
                    more = self._acks.get(timeout=wait)
                except queue.Empty:
                    break
            if more is None:
                return batch, True
            batch.append(more)
        return batch, False

    def _wait(self, opened: float) -> float:
        """How much longer the batch opened at `opened` may wait for its next message."""
        if self.stopping.is_set():
            return 0.0
        now = self.clock()
        wait = 0.0
        if self._more_coming():
            wait = opened + self.linger_seconds - now
        if self._last_put is not None:
            # The next ack of a stream is due about one gap after the last one.
            due = self._last_put + PATIENCE_GAPS * self._gap
            wait = max(wait, min(due, opened + self.interval_seconds) - now)
        return wait

    def _more_coming(self) -> bool:
        """True while messages in hand whose handling is not done may still end in an ack
        (handlers running, or about to start); a lone message (a quiet queue) is then
        deleted without waiting."""
        return self.capacity.working() > 0 and not self.stopping.is_set()

    def delete(self, batch: list[Message]) -> None:
        """Delete one batch; what SQS refuses comes back after its visibility timeout."""
        self.capacity.forget(batch)
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
                self.hooks.emit("after_ack", message)
