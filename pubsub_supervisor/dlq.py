"""Dead-letter queues: read what sits in them (with the reason) and move it back.

The consumer runtime dead-letters a message with attributes that say why and where from
(`dead_letter_reason`, `source_queue`, ...); SQS itself moves a message after
maxReceiveCount receives without a reason (a process died while handling it each time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pubsub_supervisor.errors import PoisonMessage
from pubsub_supervisor.events import unwrap_body
from pubsub_supervisor.topology import QueueSpec, Topology

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: Attributes the runtime adds when it dead-letters; a redriven message drops them.
DEAD_LETTER_ATTRIBUTES = frozenset(
    {"dead_letter_reason", "source_queue", "source_message_id", "receive_count"}
)
#: Shown when SQS moved the message itself (no attribute says why).
NO_REASON = "no reason recorded: SQS moved it after maxReceiveCount receives"
#: How long a listing keeps messages invisible: long enough for its few receives, short
#: enough that the next reader and a redrive see them at once (it releases them anyway).
HOLD_SECONDS = 5
#: How long a redrive holds what it leaves behind, so one pass does not meet it again.
REDRIVE_HOLD_SECONDS = 60
#: Messages a listing shows per DLQ unless told otherwise (the /dlq page, `pubsub dlq list`).
PAGE_SIZE = 20
#: Receives a listing may make beyond ceil(limit / 10): SQS may answer with fewer than ten.
SPARE_RECEIVES = 2


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter queue."""

    message_id: str
    dlq: str
    source_queue: str
    reason: str
    dead_lettered_at: datetime | None
    receive_count: int | None
    event_type: str | None
    event_id: str | None
    order_id: str | None
    #: The message as it sits in the DLQ (the web's DLQ page shows it).
    body: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (`pubsub dlq list --json`)."""
        return {
            "message_id": self.message_id,
            "dlq": self.dlq,
            "source_queue": self.source_queue,
            "reason": self.reason,
            "dead_lettered_at": self.dead_lettered_at.isoformat()
            if self.dead_lettered_at
            else None,
            "receive_count": self.receive_count,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "order_id": self.order_id,
        }


@dataclass(frozen=True)
class RedriveResult:
    """What one redrive of one DLQ did."""

    dlq: str
    source_queue: str
    moved: int
    failed: int
    #: Arrived after the redrive began (a redriven message that failed again): left alone.
    skipped: int


def select_queues(topology: Topology, name: str | None) -> list[QueueSpec]:
    """The queues a command acts on: all, or the one named by consumer, queue or DLQ name.

    :raise KeyError: no queue has that name (the message lists the valid names).
    """
    if name is None:
        return list(topology.queues)
    for spec in topology.queues:
        if name in (spec.consumer, spec.name, spec.dlq_name):
            return [spec]
    valid = ", ".join(spec.name for spec in topology.queues)
    raise KeyError(f"no queue named {name!r}; valid names: {valid} (or their -dlq)")


@dataclass(frozen=True)
class DeadLetterPage:
    """At most one page of a DLQ's messages, and whether it holds more."""

    dlq: str
    letters: list[DeadLetter] = field(default_factory=list)
    #: True when the DLQ holds messages this page does not show.
    more: bool = False
    #: SQS's approximate count of the DLQ's messages (visible and in flight), if read.
    approximate_count: int | None = None


def _receive(
    sqs: SQSClient, url: str, *, hold: int = REDRIVE_HOLD_SECONDS, most: int = 10
) -> list[dict[str, Any]]:
    response = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max(1, min(10, most)),
        # A (short) long poll asks every SQS server, so no message is skipped.
        WaitTimeSeconds=1,
        VisibilityTimeout=hold,
        MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        MessageAttributeNames=["All"],
    )
    messages: list[dict[str, Any]] = [dict(m) for m in response.get("Messages", [])]
    return messages


def _drain_rounds(sqs: SQSClient, url: str) -> Iterator[list[dict[str, Any]]]:
    while True:
        batch = _receive(sqs, url)
        if not batch:
            return
        yield batch


def _release(sqs: SQSClient, url: str, messages: list[dict[str, Any]]) -> None:
    """Make messages visible again at once (a stale receipt handle only fails its entry)."""
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )


def _attribute(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get("MessageAttributes", {}).get(name, {}).get("StringValue")
    return str(value) if value else None


def _original_attributes(raw: dict[str, Any]) -> dict[str, Any]:
    """The message's attributes as they were before it was dead-lettered."""
    kept: dict[str, Any] = {}
    for name, value in raw.get("MessageAttributes", {}).items():
        if name in DEAD_LETTER_ATTRIBUTES:
            continue
        kept[name] = {
            key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value
        }
    return kept


def describe(raw: dict[str, Any], spec: QueueSpec) -> DeadLetter:
    """Read one DLQ message: reason, origin, and the order it is about (if any)."""
    try:
        body = unwrap_body(raw.get("Body", ""))
    except PoisonMessage:
        body = {}
    sent = raw.get("Attributes", {}).get("SentTimestamp")
    count = _attribute(raw, "receive_count")

    def text(key: str) -> str | None:
        value = body.get(key)
        return value if isinstance(value, str) else None

    return DeadLetter(
        message_id=raw["MessageId"],
        dlq=spec.dlq_name,
        source_queue=_attribute(raw, "source_queue") or spec.name,
        reason=_attribute(raw, "dead_letter_reason") or NO_REASON,
        dead_lettered_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
        receive_count=int(count) if count and count.isdigit() else None,
        event_type=_attribute(raw, "event_type") or text("event_type"),
        event_id=_attribute(raw, "event_id") or text("event_id"),
        order_id=text("order_id"),
        body=raw.get("Body", ""),
    )


def _approximate_count(sqs: SQSClient, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs.get("ApproximateNumberOfMessages", "0")) + int(
        attrs.get("ApproximateNumberOfMessagesNotVisible", "0")
    )


def list_dead_letters(sqs: SQSClient, spec: QueueSpec, limit: int = PAGE_SIZE) -> DeadLetterPage:
    """Up to `limit` messages of the queue's DLQ, each once; they stay there.

    A bounded read: at most ceil((limit + 1) / 10) + SPARE_RECEIVES receives of a 1 s
    wait, each message held HOLD_SECONDS and released (visible again) before returning,
    so the next reader and a redrive see them at once. One message more than the page is
    asked for, to know for sure whether there are more; SQS's approximate count says
    how many.
    """
    if limit < 1:
        raise ValueError(f"limit {limit}: show at least one message per dead-letter queue")
    url = sqs.get_queue_url(QueueName=spec.dlq_name)["QueueUrl"]
    wanted = limit + 1
    unique: dict[str, dict[str, Any]] = {}
    held: list[dict[str, Any]] = []
    emptied = False
    try:
        for _ in range(-(-wanted // 10) + SPARE_RECEIVES):
            batch = _receive(sqs, url, hold=HOLD_SECONDS, most=wanted - len(unique))
            held.extend(batch)
            if not batch:
                emptied = True
                break
            for raw in batch:
                # A message can come back within one read (its hold ran out): list it once.
                unique.setdefault(raw["MessageId"], raw)
            if len(unique) >= wanted:
                break
    finally:
        _release(sqs, url, held)
    count = _approximate_count(sqs, url)
    letters = sorted(
        (describe(raw, spec) for raw in unique.values()),
        key=lambda d: d.dead_lettered_at or datetime.min.replace(tzinfo=UTC),
    )
    shown = letters[:limit]
    more = len(letters) > limit or (not emptied and count > len(shown))
    return DeadLetterPage(
        dlq=spec.dlq_name, letters=shown, more=more, approximate_count=max(count, len(letters))
    )


def _move(
    sqs: SQSClient, dlq_url: str, source_url: str, todo: list[dict[str, Any]]
) -> tuple[int, int]:
    """Send up to ten dead letters to their queue, then delete them: (moved, failed)."""
    sent = sqs.send_message_batch(
        QueueUrl=source_url,
        Entries=[
            {"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": _original_attributes(m)}
            for i, m in enumerate(todo)
        ],
    )
    ok = {entry["Id"] for entry in sent.get("Successful", [])}
    failed = len(todo) - len(ok)
    # What could not be sent stays in the DLQ (visible again after REDRIVE_HOLD_SECONDS).
    done = [m for i, m in enumerate(todo) if str(i) in ok]
    if not done:
        return 0, failed
    deleted = sqs.delete_message_batch(
        QueueUrl=dlq_url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
    )
    # Sent but not deleted: a copy stays behind, so say so (the consumer would see it
    # once more, harmlessly).
    stuck = len(deleted.get("Failed", []))
    return len(done) - stuck, failed + stuck


def redrive(
    sqs: SQSClient,
    spec: QueueSpec,
    *,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    message_ids: Collection[str] | None = None,
) -> RedriveResult:
    """Move every message of the queue's DLQ back to the queue, with its original
    attributes (event id, type, trace id), so the consumer processes it again.

    Messages dead-lettered after the redrive began are left in the DLQ: a message that
    still fails comes straight back, and would otherwise be moved round forever.
    Each message is sent before it is deleted: an interruption may leave a copy in both
    queues, which the idempotent consumers absorb; it never loses one.
    With `message_ids`, only those messages move; the others stay in the DLQ, and the pass
    ends once it has met them all. Each receive takes at most ten messages, each met once.
    """
    dlq_url = sqs.get_queue_url(QueueName=spec.dlq_name)["QueueUrl"]
    source_url = sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
    began = now_ms()
    moved = failed = 0
    wanted = set(message_ids) if message_ids is not None else None
    seen: set[str] = set()
    #: What this pass leaves in the DLQ, by message id (the latest receipt handle).
    kept: dict[str, dict[str, Any]] = {}
    skipped = 0
    try:
        for batch in _drain_rounds(sqs, dlq_url):
            new = [m for m in batch if m["MessageId"] not in seen]
            for m in batch:
                if m["MessageId"] in kept:
                    kept[m["MessageId"]] = m
            if not new:
                # Only messages this pass already met (their hold ran out): it has been
                # through the whole queue.
                break
            seen.update(m["MessageId"] for m in new)
            fresh = [m for m in new if int(m["Attributes"].get("SentTimestamp", "0")) > began]
            skipped += len(fresh)
            todo = [
                m for m in new if m not in fresh and (wanted is None or m["MessageId"] in wanted)
            ]
            kept.update((m["MessageId"], m) for m in new if m not in todo)
            if todo:
                outcome = _move(sqs, dlq_url, source_url, todo)
                moved += outcome[0]
                failed += outcome[1]
            if wanted is not None and wanted <= seen:
                break
    finally:
        _release(sqs, dlq_url, list(kept.values()))
    return RedriveResult(
        dlq=spec.dlq_name,
        source_queue=spec.name,
        moved=moved,
        failed=failed,
        skipped=skipped,
    )
