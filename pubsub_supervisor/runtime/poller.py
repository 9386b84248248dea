"""The poller: long-polls one queue whenever a whole batch fits in the consumer's capacity."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pubsub_supervisor.retry import Backoff
from pubsub_supervisor.runtime.capacity import Capacity
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.middleware import Hooks
from pubsub_supervisor.runtime.visibility import Visibility

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

#: First pause after a failed receive; it doubles per failure.
FIRST_POLL_BACKOFF = 0.5
#: Longest pause between receive attempts while the endpoint fails: once it is back,
#: consumers resume within this.
MAX_POLL_BACKOFF = 10.0


class Poller:
    """Receives batches into the capacity and hands each message to `deliver`; a thread
    runs `run()`, several may share one poller."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        batch_size: int,
        wait_seconds: int,
        visibility_timeout: int,
        capacity: Capacity,
        visibility: Visibility,
        hooks: Hooks,
        deliver: Callable[[Message], None],
        stopping: threading.Event,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.capacity = capacity
        self.visibility = visibility
        self.hooks = hooks
        self.deliver = deliver
        self.stopping = stopping

    def run(self) -> None:
        """Receive until the consumer stops."""
        backoff = Backoff(FIRST_POLL_BACKOFF, MAX_POLL_BACKOFF)
        while not self.stopping.is_set():
            # Receive only when a whole batch fits: a ReceiveMessage costs about the same
            # for 1 message as for 10, so partial ones waste the broker's time.
            want = self.batch_size
            if not self.capacity.reserve(want, self.stopping):
                return
            try:
                response = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=want,
                    WaitTimeSeconds=self.wait_seconds,
                    VisibilityTimeout=self.visibility_timeout,
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                    MessageAttributeNames=["All"],
                )
            except Exception as error:
                self.capacity.unreserve(want)
                delay = backoff.next()
                log.warning(
                    "receive failed, backing off",
                    extra={"queue": self.queue_name, "error": str(error), "retry_in": delay},
                )
                self.stopping.wait(delay)
                continue
            backoff.reset()
            messages = [Message.from_sqs(raw) for raw in response.get("Messages", [])]
            self.capacity.received(messages, want, time.monotonic() + self.visibility_timeout)
            if not messages:
                continue
            self.hooks.emit("after_receive", self.queue_name, len(messages))
            if self.stopping.is_set():
                # A long poll in flight at the stop: its messages go straight back.
                self.visibility.release(messages)
                return
            for message in messages:
                self.deliver(message)
