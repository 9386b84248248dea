"""Idempotency records: each event's effect happens once, and its outcome is remembered.

Two ways to use them:
- `once()` for effects in the service's own store: the record and the effect commit in
  one transaction, so a redelivered event finds the record and changes nothing.
- `claim()` / `complete()` for effects outside the store (sending an email): the event is
  claimed with a lease, the effect runs without holding a lock, then the outcome is
  recorded. A crash between the effect and the record repeats the effect once the lease
  ends; that window is a few milliseconds wide.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from pubsub_supervisor import db
from pubsub_supervisor.errors import RetryLater
from pubsub_supervisor.events import ServiceStatus, utcnow

processed_events = Table(
    "processed_events",
    MetaData(),
    Column("event_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    #: `in_progress` while claimed, then the outcome's status.
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("data", Text, nullable=False, default="{}"),
    Column("claimed_until", DateTime(timezone=True)),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)

IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class Outcome:
    """What a service did with one order."""

    status: ServiceStatus
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def create_schema(engine: Engine) -> None:
    """Create the table in the service's store."""
    processed_events.metadata.create_all(engine)


def _stored(row: Any) -> Outcome:
    return Outcome(status=row.status, reason=row.reason, data=json.loads(row.data))


def once(
    engine: Engine, event_id: str, order_id: str, effect: Callable[[Connection], Outcome]
) -> tuple[Outcome, bool]:
    """Run `effect` in the same transaction as the record; returns (outcome, first_time)."""
    try:
        with db.write(engine) as conn:
            row = conn.execute(
                select(processed_events).where(processed_events.c.event_id == event_id)
            ).first()
            if row is not None:
                return _stored(row), False
            outcome = effect(conn)
            conn.execute(
                insert(processed_events).values(
                    event_id=event_id,
                    order_id=order_id,
                    status=outcome.status,
                    reason=outcome.reason,
                    data=json.dumps(outcome.data),
                    processed_at=utcnow(),
                )
            )
            return outcome, True
    except IntegrityError:
        # Another process recorded the same event first; its effect stands, ours rolled back.
        return _lookup(engine, event_id), False


def _lookup(engine: Engine, event_id: str) -> Outcome:
    with db.read(engine) as conn:
        row = conn.execute(
            select(processed_events).where(processed_events.c.event_id == event_id)
        ).one()
    return _stored(row)


def claim(engine: Engine, event_id: str, order_id: str, lease_seconds: int) -> Outcome | None:
    """Claim an event for an external effect; returns its outcome if it is already done.

    :raise RetryLater: another consumer holds a live claim on it.
    """
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    try:
        with db.write(engine) as conn:
            row = conn.execute(
                select(processed_events).where(processed_events.c.event_id == event_id)
            ).first()
            if row is None:
                conn.execute(
                    insert(processed_events).values(
                        event_id=event_id,
                        order_id=order_id,
                        status=IN_PROGRESS,
                        data="{}",
                        claimed_until=until,
                        processed_at=now,
                    )
                )
                return None
            if row.status != IN_PROGRESS:
                return _stored(row)
            claimed_until = row.claimed_until.replace(tzinfo=now.tzinfo)
            if claimed_until > now:
                # Come back when the lease ends, not a whole lease later.
                wait = math.ceil((claimed_until - now).total_seconds()) + 1
                raise RetryLater("event is claimed by another consumer", delay=wait)
            # The previous claimer died before recording an outcome: take over.
            conn.execute(
                update(processed_events)
                .where(processed_events.c.event_id == event_id)
                .values(claimed_until=until)
            )
            return None
    except IntegrityError:
        raise RetryLater("event was claimed concurrently", delay=1) from None


def complete(engine: Engine, event_id: str, outcome: Outcome) -> None:
    """Record the outcome of a claimed event."""
    with db.write(engine) as conn:
        conn.execute(
            update(processed_events)
            .where(processed_events.c.event_id == event_id)
            .values(
                status=outcome.status,
                reason=outcome.reason,
                data=json.dumps(outcome.data),
                claimed_until=None,
                processed_at=utcnow(),
            )
        )


def release(engine: Engine, event_id: str) -> None:
    """Drop a claim whose effect failed, so a retry may claim it at once."""
    with db.write(engine) as conn:
        conn.execute(
            processed_events.delete()
            .where(processed_events.c.event_id == event_id)
            .where(processed_events.c.status == IN_PROGRESS)
        )
