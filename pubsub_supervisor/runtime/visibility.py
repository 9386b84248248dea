"""Visibility changes of a consumer's messages: retry delays, releases and extensions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pubsub_supervisor.runtime.capacity import Capacity
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.middleware import Hooks

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

#: Largest batch SQS accepts for receive, delete and change-visibility calls.
SQS_BATCH = 10
#: Longest visibility timeout SQS accepts (12 hours).
MAX_VISIBILITY = 43200


class Visibility:
    """Changes visibility one decision at a time, so a heartbeat never overwrites a retry
    delay or a release (visibility 0) that was decided after it read the messages in hand."""

    def __init__(self, sqs: SQSClient, queue_url: str, capacity: Capacity, hooks: Hooks) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.capacity = capacity
        self.hooks = hooks
        self._lock = threading.Lock()

    def delay(self, message: Message, seconds: int) -> None:
        """Put one message back, visible again after `seconds`."""
        with self._lock:
            self.capacity.forget([message])
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message.receipt_handle,
                    VisibilityTimeout=min(seconds, MAX_VISIBILITY),
                )
            except Exception as error:
                # It reappears when its current visibility ends: later, but not lost.
                log.warning("could not set retry delay", extra={"error": str(error)})

    def release(self, messages: Sequence[Message]) -> None:
        """Hand messages back for immediate redelivery (visibility 0)."""
        if not messages:
            return
        with self._lock:
            self.capacity.forget(messages)
            self._change(messages, 0)
        self.hooks.emit("after_release", messages)

    def extend_expiring(self, visibility: int) -> list[Message]:
        """Give `visibility` more seconds to the messages in hand whose visibility ends
        within half of it; return them."""
        with self._lock:
            now = time.monotonic()
            due = self.capacity.expiring(now, visibility / 2, now + visibility)
            if due:
                self._change(due, visibility)
        if due:
            self.hooks.emit("after_extend", due)
        return due

    def _change(self, messages: Sequence[Message], seconds: int) -> None:
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
