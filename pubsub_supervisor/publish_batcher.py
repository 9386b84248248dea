"""Gathers messages for one SNS topic into PublishBatch calls: one call for up to ten
messages published by concurrent threads, each caller waiting for its own answer."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pubsub_supervisor import tracing
from pubsub_supervisor.errors import PublishFailed

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)

#: Largest PublishBatch SNS accepts.
SNS_BATCH = 10
#: Longest wait for more messages before a batch goes out: bounded, so a result is
#: never held back for long.
LINGER_SECONDS = 0.01


@dataclass
class _Entry:
    message: str
    attributes: Mapping[str, Any]
    done: Future[None] = field(default_factory=Future)


class PublishBatcher:
    """One sender thread per topic; while a call is in flight the next batch fills up, and
    it lingers (up to `linger_seconds`) only while `more_coming()` says others will publish."""

    def __init__(
        self,
        sns: SNSClient,
        topic_arn: str,
        *,
        linger_seconds: float = LINGER_SECONDS,
        more_coming: Callable[[int], bool] = lambda _batched: False,
    ) -> None:
        self.sns = sns
        self.topic_arn = topic_arn
        self.linger_seconds = linger_seconds
        #: Called with the batch's size: True while other threads are about to publish.
        self.more_coming = more_coming
        self._entries: queue.SimpleQueue[_Entry] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def publish(self, message: str, attributes: Mapping[str, Any]) -> None:
        """Publish one message in the next batch; raises what SNS answered for it."""
        # The sender thread has no trace of its own: each message takes its caller's.
        entry = _Entry(message, tracing.with_context(dict(attributes)))
        self._ensure_sender()
        self._entries.put(entry)
        entry.done.result()

    def _ensure_sender(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="publish-batcher", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            self.send(self.gather())

    def gather(self) -> list[_Entry]:
        """Up to one batch: what is waiting, and for a moment what is about to come."""
        batch = [self._entries.get()]
        linger_until = time.monotonic() + self.linger_seconds
        while len(batch) < SNS_BATCH:
            try:
                batch.append(self._entries.get_nowait())
                continue
            except queue.Empty:
                pass
            wait = linger_until - time.monotonic()
            if wait <= 0 or not self.more_coming(len(batch)):
                break
            try:
                batch.append(self._entries.get(timeout=wait))
            except queue.Empty:
                break
        return batch

    def send(self, batch: list[_Entry]) -> None:
        """One PublishBatch; each caller gets its own entry's outcome."""
        entries: list[Any] = [
            {"Id": str(i), "Message": e.message, "MessageAttributes": dict(e.attributes)}
            for i, e in enumerate(batch)
        ]
        try:
            with tracing.publishing(self.topic_arn, entries):
                response = self.sns.publish_batch(
                    TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
                )
        except Exception as error:
            # Every caller sees the call's error and retries as if it had made it.
            for entry in batch:
                entry.done.set_exception(error)
            return
        failed = {f["Id"]: f for f in response.get("Failed", [])}
        for i, entry in enumerate(batch):
            failure = failed.get(str(i))
            if failure is None:
                entry.done.set_result(None)
            else:
                detail = failure.get("Message") or failure.get("Code", "refused")
                entry.done.set_exception(PublishFailed(f"SNS refused the message: {detail}"))
