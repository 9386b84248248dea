"""The retry and dead-letter policy: what a handler's failure does to its message.

`PoisonMessage`: to the dead-letter queue at once, with the reason. `RetryLater`: back
to the queue after the delay it asks for. Anything else: back after an exponential
backoff, until the queue's `maxReceiveCount`, then to the dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pubsub_supervisor.errors import PoisonMessage, RetryLater
from pubsub_supervisor.retry import Backoff, backoff
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.middleware import Hooks
from pubsub_supervisor.runtime.visibility import Visibility

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

DeadLetterHook = Callable[[Message, str], None]

#: Pauses while the queue's attributes cannot be read at start: 1 s, doubling up to this.
MAX_LOAD_BACKOFF = 10.0
#: Longest dead-letter reason kept, in characters.
MAX_REASON = 1000
#: SQS takes at most this many message attributes.
MAX_ATTRIBUTES = 10
#: The attributes an event is published with, kept first when a dead letter carries them.
_EVENT = ("event_id", "event_type", "traceparent", "tracestate", "baggage", "trace_id")
#: What SQS refuses in a string attribute (XML 1.0 excludes these code points).
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def attribute_text(text: str, limit: int = MAX_REASON) -> str:
    """`text` as SQS takes it in a string attribute: characters it refuses replaced, at
    most `limit` characters (a cut one ends with an ellipsis)."""
    clean = _NOT_XML.sub("\ufffd", text) or "(none)"
    return clean if len(clean) <= limit else clean[: limit - 1] + "\u2026"


def retry_delay(receive_count: int, base: int, cap: int) -> int:
    """Seconds a failed message stays invisible: base * 2**(receives-1), at most `cap`."""
    return int(backoff(receive_count, base, cap))


class Retries:
    """Decides, after a handler failed, between a retry and the dead-letter queue, and
    carries it out (a retry through `visibility`, a dead-letter then an ack through `ack`)."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        backoff_base: int,
        backoff_cap: int,
        max_receive_count: int | None,
        visibility: Visibility,
        hooks: Hooks,
        ack: Callable[[Message], None],
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        #: Receives after which a failing message is dead-lettered (None: never).
        self.max_receives = max_receive_count
        self.visibility = visibility
        self.hooks = hooks
        self.ack = ack
        self.on_dead_letter = on_dead_letter
        self.dlq_url: str | None = None

    def load(self, stopping: threading.Event) -> None:
        """Find the dead-letter queue and maxReceiveCount in the queue's RedrivePolicy,
        retrying until the queue is reachable or the consumer stops."""
        delays = Backoff(1.0, MAX_LOAD_BACKOFF)
        while not stopping.is_set():
            try:
                # No "Attributes" at all when the queue has none of those asked for.
                attrs = self.sqs.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
                ).get("Attributes", {})
                break
            except Exception as error:
                delay = delays.next()
                log.warning(
                    "queue not reachable yet, retrying",
                    extra={"queue": self.queue_name, "error": str(error), "retry_in": delay},
                )
                stopping.wait(delay)
        else:
            return
        policy = json.loads(attrs.get("RedrivePolicy", "null") or "null")
        if not policy:
            log.warning("queue has no RedrivePolicy: failures retry until retention ends")
            return
        if self.max_receives is None:
            self.max_receives = int(policy["maxReceiveCount"])
        dlq_name = policy["deadLetterTargetArn"].rsplit(":", 1)[-1]
        self.dlq_url = self.sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]

    def backoff(self, message: Message) -> int:
        """Seconds before this message's next delivery after a failure."""
        return retry_delay(message.receive_count, self.backoff_base, self.backoff_cap)

    def after_failure(self, message: Message, error: Exception) -> None:
        """Retry or dead-letter a message whose handler raised `error`."""
        if isinstance(error, PoisonMessage):
            self.dead_letter(message, f"poison: {error}")
        elif isinstance(error, RetryLater):
            self.retry(message, error.delay or self.backoff(message), str(error))
        else:
            reason = f"{type(error).__name__}: {error}"
            if self.max_receives is not None and message.receive_count >= self.max_receives:
                self.dead_letter(message, f"failed {message.receive_count} times: {reason}")
            else:
                log.warning(
                    "handler failed, will retry",
                    exc_info=error,
                    extra={"receive_count": message.receive_count},
                )
                self.retry(message, self.backoff(message), reason)

    def in_progress(self, message: Message) -> None:
        """The same event is being handled by another thread right now (a duplicate in one
        batch, or a redelivery): let that one finish, then see this one again."""
        self.retry(message, max(self.backoff_base, 1), "same event in progress")

    def retry(self, message: Message, delay: int, reason: str) -> None:
        """Put the message back, visible again after `delay` seconds."""
        self.visibility.delay(message, delay)
        self.hooks.emit("after_retry", message, delay, reason)

    def dead_letter(self, message: Message, reason: str) -> None:
        """Move the message to the DLQ with the reason, then delete it here."""
        if self.dlq_url is None:
            log.error("cannot dead-letter: queue has no DLQ", extra={"reason": reason})
            self.retry(message, self.backoff_cap, reason)
            return
        # Ours first: a message with SQS's ten attributes of its own must not push the
        # reason out.
        attributes: dict[str, Any] = {
            "dead_letter_reason": {"DataType": "String", "StringValue": attribute_text(reason)},
            "source_queue": {"DataType": "String", "StringValue": self.queue_name},
            "source_message_id": {
                "DataType": "String",
                "StringValue": attribute_text(message.message_id, 256),
            },
            "receive_count": {"DataType": "Number", "StringValue": str(message.receive_count)},
        }
        # Then the event's own (a redrive keeps its event id), then any others that fit.
        originals = sorted(message.message_attributes.items(), key=lambda a: a[0] not in _EVENT)
        for name, value in originals:
            if value and name not in attributes and len(attributes) < MAX_ATTRIBUTES:
                attributes[name] = {"DataType": "String", "StringValue": attribute_text(value)}
        try:
            self.sqs.send_message(
                QueueUrl=self.dlq_url,
                MessageBody=message.body or "(empty)",
                MessageAttributes=attributes,
            )
        except Exception as error:
            log.error("could not dead-letter, will retry", extra={"error": str(error)})
            self.retry(message, self.backoff(message), reason)
            return
        log.error("message dead-lettered", extra={"reason": reason, "queue": self.queue_name})
        self.ack(message)
        self.hooks.emit("after_dead_letter", message, reason)
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(message, reason)
            except Exception:
                log.exception("dead-letter hook failed")
