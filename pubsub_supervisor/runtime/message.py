"""A received SQS message, as handlers see it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Message:
    """One SQS message in hand: body, attributes, and the handle to acknowledge it."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    message_attributes: dict[str, str] = field(default_factory=dict)
    #: monotonic time the message was received; its visibility runs from here.
    received_at: float = field(default_factory=time.monotonic)

    @classmethod
    def from_sqs(cls, raw: Mapping[str, Any]) -> Message:
        """Build from one entry of a ReceiveMessage response."""
        attrs = {
            name: value.get("StringValue", "")
            for name, value in raw.get("MessageAttributes", {}).items()
            if value.get("DataType", "String").startswith(("String", "Number"))
        }
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            attributes=dict(raw.get("Attributes", {})),
            message_attributes=attrs,
        )

    @property
    def receive_count(self) -> int:
        """How many times SQS has handed this message out, this time included."""
        return int(self.attributes.get("ApproximateReceiveCount", "1"))

    @property
    def event_id(self) -> str:
        """The event id (a message attribute set by the publisher), else the message id."""
        return self.message_attributes.get("event_id") or self.message_id

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id the message carries (its `traceparent`), when there is one."""
        from pubsub_supervisor import tracing

        return tracing.trace_id_in(self.message_attributes)

    @property
    def sent_timestamp(self) -> float | None:
        """When SQS accepted the message, in epoch seconds."""
        sent = self.attributes.get("SentTimestamp")
        return int(sent) / 1000 if sent else None
