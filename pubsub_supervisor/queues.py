"""Queue depths and dead-letter queues: read and redrive, for the CLI and the web.

SQS has no "peek": a DLQ is read by receiving its messages with a short visibility
timeout and handing them straight back. Nothing consumes a DLQ, so that is harmless.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pubsub_supervisor.topology import QueueSpec, Topology

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: Attributes the runtime adds when it dead-letters a message (dropped on redrive).
DEAD_LETTER_ATTRIBUTES = frozenset(
    {"dead_letter_reason", "source_queue", "source_message_id", "receive_count"}
)
#: How long a read or redrive holds DLQ messages before handing back the ones it left.
HOLD_SECONDS = 30
#: Largest batch SQS accepts.
BATCH = 10


@dataclass(frozen=True)
class QueueDepth:
    """One queue and its DLQ, as SQS counts them (approximate, like every SQS count)."""

    name: str
    consumer: str
    visible: int
    in_flight: int
    delayed: int
    dlq_name: str
    dlq_visible: int


@dataclass(frozen=True)
class DeadLetter:
    """A message in a dead-letter queue."""

    message_id: str
    body: str
    sent_at: datetime | None
    #: Why the runtime gave up; None when SQS moved it (maxReceiveCount reached).
    reason: str | None
    receive_count: int | None
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def event(self) -> dict[str, Any]:
        """The event inside the body (unwrapped from an SNS envelope), or {}."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return {}
        if isinstance(data, dict) and data.get("Type") == "Notification":
            try:
                data = json.loads(data.get("Message", ""))
            except ValueError:
                return {}
        return data if isinstance(data, dict) else {}


class QueueReader:
    """Reads the topology's queues through one SQS client; caches queue URLs."""

    def __init__(self, sqs: SQSClient, topology: Topology) -> None:
        self.sqs = sqs
        self.topology = topology
        self._urls: dict[str, str] = {}

    def url(self, name: str) -> str:
        """URL of a queue by name."""
        if name not in self._urls:
            self._urls[name] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._urls[name]

    def spec_for_dlq(self, dlq_name: str) -> QueueSpec:
        """The queue whose dead-letter queue this is.

        :raise KeyError: the topology has no such DLQ.
        """
        for spec in self.topology.queues:
            if spec.dlq_name == dlq_name:
                return spec
        raise KeyError(f"{dlq_name} is not a dead-letter queue of this topology")

    def _counts(self, name: str) -> dict[str, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.url(name),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return {
            "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        }

    def depths(self) -> list[QueueDepth]:
        """Every queue with its DLQ's depth, in topology order.

        :raise botocore.exceptions.ClientError: a queue is missing (not provisioned).
        """
        rows = []
        for spec in self.topology.queues:
            main = self._counts(spec.name)
            dlq = self._counts(spec.dlq_name)
            rows.append(
                QueueDepth(
                    name=spec.name,
                    consumer=spec.consumer,
                    visible=main["visible"],
                    in_flight=main["in_flight"],
                    delayed=main["delayed"],
                    dlq_name=spec.dlq_name,
                    dlq_visible=dlq["visible"] + dlq["in_flight"],
                )
            )
        return rows

    def _receive(self, url: str) -> list[Any]:
        response = self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=BATCH,
            VisibilityTimeout=HOLD_SECONDS,
            # A short wait: short polling may miss messages on a sparse queue.
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _hand_back(self, url: str, raw: list[Any]) -> None:
        for start in range(0, len(raw), BATCH):
            entries: list[Any] = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(raw[start : start + BATCH])
            ]
            self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)

    def peek(self, dlq_name: str, limit: int = 50) -> list[DeadLetter]:
        """Up to `limit` messages of a DLQ, oldest first; they stay in the DLQ."""
        url = self.url(dlq_name)
        # Stop at what SQS counts, rather than paying a long poll to find the queue empty.
        wanted = min(limit, self._counts(dlq_name)["visible"])
        held: list[Any] = []
        try:
            while len(held) < wanted:
                batch = self._receive(url)
                if not batch:
                    break
                held.extend(batch)
        finally:
            self._hand_back(url, held)
        letters = {m["MessageId"]: _dead_letter(m) for m in held}
        return sorted(
            letters.values(), key=lambda d: d.sent_at or datetime.min.replace(tzinfo=UTC)
        )[:limit]

    def redrive(self, dlq_name: str, message_ids: Collection[str] | None = None) -> int:
        """Send a DLQ's messages (all, or those listed) back to their queue; returns how many."""
        # Each goes back with its original attributes (event id, trace id), so the
        # consumer's idempotency and the logs' trace still apply.
        dlq_url = self.url(dlq_name)
        target_url = self.url(self.spec_for_dlq(dlq_name).name)
        left: list[Any] = []
        moved = 0
        try:
            while True:
                batch = self._receive(dlq_url)
                if not batch:
                    break
                chosen = [m for m in batch if message_ids is None or m["MessageId"] in message_ids]
                left.extend(m for m in batch if m not in chosen)
                moved += self._move(dlq_url, target_url, chosen)
                if message_ids is not None and moved >= len(message_ids):
                    break
        finally:
            self._hand_back(dlq_url, left)
        return moved

    def _move(self, dlq_url: str, target_url: str, raw: list[Any]) -> int:
        if not raw:
            return 0
        entries: list[Any] = [
            {
                "Id": str(i),
                "MessageBody": m["Body"],
                "MessageAttributes": {
                    name: value
                    for name, value in m.get("MessageAttributes", {}).items()
                    if name not in DEAD_LETTER_ATTRIBUTES
                },
            }
            for i, m in enumerate(raw)
        ]
        sent = self.sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
        ok = {s["Id"] for s in sent.get("Successful", [])}
        done = [m for i, m in enumerate(raw) if str(i) in ok]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        # Messages SQS refused to take stay in the DLQ; their hold ends by itself.
        return len(done)


def _dead_letter(raw: dict[str, Any]) -> DeadLetter:
    attrs = {
        name: value.get("StringValue", "")
        for name, value in raw.get("MessageAttributes", {}).items()
    }
    sent = raw.get("Attributes", {}).get("SentTimestamp")
    count = attrs.get("receive_count")
    return DeadLetter(
        message_id=raw["MessageId"],
        body=raw.get("Body", ""),
        sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
        reason=attrs.get("dead_letter_reason"),
        receive_count=int(count) if count and count.isdigit() else None,
        attributes=attrs,
    )
