"""The ack batcher: deletes handled messages in batches of up to ten."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from pubsub_supervisor.runtime.capacity import Capacity
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.middleware import Hooks
from pubsub_supervisor.runtime.visibility import SQS_BATCH

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)


class AckBatcher:
    """Gathers messages to delete, lingering briefly while more are on their way, and sends
    one DeleteMessageBatch per gathering; threads run `run()` until `stop()`."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        capacity: Capacity,
        hooks: Hooks,
        stopping: threading.Event,
        linger_seconds: float,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.capacity = capacity
        self.hooks = hooks
        self.stopping = stopping
        self.linger_seconds = linger_seconds
        #: Messages to delete; None tells one thread to exit.
        self._acks: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._gather_lock = threading.Lock()

    def put(self, message: Message) -> None:
        """Delete this message soon."""
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
        linger_until = time.monotonic() + self.linger_seconds
        # What is waiting, and, for a moment, what handlers working on the messages in
        # hand are about to add.
        while len(batch) < SQS_BATCH:
            try:
                more = self._acks.get_nowait()
            except queue.Empty:
                wait = linger_until - time.monotonic()
                if wait <= 0 or not self._more_coming(len(batch)):
                    break
                try:
                    more = self._acks.get(timeout=wait)
                except queue.Empty:
                    break
            if more is None:
                return batch, True
            batch.append(more)
        return batch, False

    def _more_coming(self, batched: int) -> bool:
        """True while messages in hand beyond the batch being gathered may still end in an
        ack (handlers running, or about to start); a lone message (a quiet queue) is then
        deleted without waiting."""
        return self.capacity.in_hand() > batched and not self.stopping.is_set()

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
