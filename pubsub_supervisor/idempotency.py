"""Idempotency records: each event's effect happens once, and its outcome is remembered.

Two ways to use them:
- `once()` for effects in the service's own store: the record and the effect commit in
  one transaction, so a redelivered event finds the record and changes nothing.
- `claim()` / `complete()` for effects outside the store (sending an email): the event is
  claimed with a lease, the effect runs without holding a lock, then the outcome is
  recorded. A crash between the effect and the record repeats the effect once the lease
  ends; that window is a few milliseconds wide.

- `once_per_order()` for effects that happen once per order whatever the event id (a replay
  of an order under a new event id answers the order's first outcome): the order's record
  in `processed_orders` commits with the effect too.

All hold across processes sharing one PostgreSQL store: the record's primary key decides
which consumer goes first (see `_record`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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

from pubsub_supervisor import db
from pubsub_supervisor.errors import RetryLater
from pubsub_supervisor.events import ServiceStatus, as_utc, utcnow

#: The table's name in every service's store.
TABLE = "processed_events"


def columns() -> tuple[Column[Any], ...]:
    """The table's columns, new each call: every service's baseline migration creates the
    table from them (`op.create_table(idempotency.TABLE, *idempotency.columns())`)."""
    return (
        Column("event_id", String(64), primary_key=True),
        Column("order_id", String(64), nullable=False),
        #: `in_progress` while claimed, then the outcome's status.
        Column("status", String(16), nullable=False),
        Column("reason", Text),
        # A client-side default only: the DDL has none.
        Column("data", Text, nullable=False, default="{}"),
        Column("claimed_until", DateTime(timezone=True)),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )


processed_events = Table(TABLE, MetaData(), *columns())

#: The table of orders' first outcomes, in the stores of services that act once per order.
ORDERS_TABLE = "processed_orders"


def order_columns() -> tuple[Column[Any], ...]:
    """The columns of `processed_orders`, new each call (for the stores' migrations)."""
    return (
        Column("order_id", String(64), primary_key=True),
        #: The event whose effect this is.
        Column("event_id", String(64), nullable=False),
        Column("status", String(16), nullable=False),
        Column("reason", Text),
        Column("data", Text, nullable=False, default="{}"),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )


processed_orders = Table(ORDERS_TABLE, MetaData(), *order_columns())

_ORDER_KEYS = tuple(column.name for column in order_columns())


def add_orders_table(op: Any) -> None:
    """Create `processed_orders` with each order already handled recorded by its earliest
    event (its first outcome): the migration of every service that acts once per order."""
    orders = op.create_table(ORDERS_TABLE, *order_columns())
    conn = op.get_bind()
    first: dict[str, dict[str, object]] = {}
    done = select(processed_events).where(processed_events.c.status != IN_PROGRESS)
    ordered = done.order_by(processed_events.c.processed_at, processed_events.c.event_id)
    for row in conn.execute(ordered):
        first.setdefault(row.order_id, dict(row._mapping))
    if first:
        conn.execute(insert(orders), [{k: row[k] for k in _ORDER_KEYS} for row in first.values()])


IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class Outcome:
    """What a service did with one order."""

    status: ServiceStatus
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def create_schema(engine: Engine) -> None:
    """Create the table in a scratch store (services migrate their stores instead)."""
    processed_events.metadata.create_all(engine)


def _stored(row: Any) -> Outcome:
    return Outcome(status=row.status, reason=row.reason, data=json.loads(row.data))


def _record(conn: Connection, event_id: str, order_id: str, claimed_until: datetime | None) -> bool:
    """Insert the event's record unless one exists; True when this call inserted it.

    Across processes on PostgreSQL, a concurrent insert of the same event waits for the
    first transaction: if that commits, ON CONFLICT turns the would-be unique violation
    into "no row inserted" (a duplicate); if it rolls back, this insert goes ahead.
    """
    query = db.insert(conn, processed_events).values(
        event_id=event_id,
        order_id=order_id,
        status=IN_PROGRESS,
        data="{}",
        claimed_until=claimed_until,
        processed_at=utcnow(),
    )
    # RETURNING, not rowcount: drivers need not report a rowcount for INSERT.
    inserted = query.on_conflict_do_nothing(index_elements=["event_id"]).returning(
        processed_events.c.event_id
    )
    return conn.execute(inserted).first() is not None


def _row(conn: Connection, event_id: str) -> Any:
    return conn.execute(
        select(processed_events).where(processed_events.c.event_id == event_id)
    ).one()


def once(
    engine: Engine, event_id: str, order_id: str, effect: Callable[[Connection], Outcome]
) -> tuple[Outcome, bool]:
    """Run `effect` in the same transaction as the record; returns (outcome, first_time).

    The record is written first, so a duplicate delivered to another consumer at the same
    moment blocks on it and then finds the committed outcome, never running the effect.
    """
    with db.write(engine) as conn:
        if not _record(conn, event_id, order_id, None):
            return _stored(_row(conn, event_id)), False
        outcome = effect(conn)
        _finish(conn, event_id, outcome)
        return outcome, True


def once_per_order(
    engine: Engine, event_id: str, order_id: str, effect: Callable[[Connection], Outcome]
) -> tuple[Outcome, bool]:
    """`once()`, and once per order: an event of an order that already had its effect
    (under another event id) answers that first outcome; returns (outcome, first_time)."""
    first = True

    def first_for_order(conn: Connection) -> Outcome:
        nonlocal first
        query = db.insert(conn, processed_orders).values(
            order_id=order_id,
            event_id=event_id,
            status=IN_PROGRESS,
            data="{}",
            processed_at=utcnow(),
        )
        # As in `_record`: a concurrent first event of the order waits for this key.
        inserted = query.on_conflict_do_nothing(index_elements=["order_id"]).returning(
            processed_orders.c.order_id
        )
        if conn.execute(inserted).first() is None:
            first = False
            row = conn.execute(
                select(processed_orders).where(processed_orders.c.order_id == order_id)
            ).one()
            return _stored(row)
        outcome = effect(conn)
        conn.execute(
            update(processed_orders)
            .where(processed_orders.c.order_id == order_id)
            .values(status=outcome.status, reason=outcome.reason, data=json.dumps(outcome.data))
        )
        return outcome

    outcome, new_event = once(engine, event_id, order_id, first_for_order)
    return outcome, new_event and first


def _finish(conn: Connection, event_id: str, outcome: Outcome) -> None:
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


def claim(engine: Engine, event_id: str, order_id: str, lease_seconds: int) -> Outcome | None:
    """Claim an event for an external effect; returns its outcome if it is already done.

    :raise RetryLater: another consumer holds a live claim on it.
    """
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    with db.write(engine) as conn:
        if _record(conn, event_id, order_id, until):
            return None
        row = _row(conn, event_id)
        if row.status != IN_PROGRESS:
            return _stored(row)
        if row.claimed_until is not None and as_utc(row.claimed_until) > now:
            # Come back when the lease ends, not a whole lease later.
            wait = math.ceil((as_utc(row.claimed_until) - now).total_seconds()) + 1
            raise RetryLater("event is claimed by another consumer", delay=wait)
        # The previous claimer died before recording an outcome: take over, unless another
        # consumer took over in the meantime (then its update changed the lease first).
        took = conn.execute(
            update(processed_events)
            .where(processed_events.c.event_id == event_id)
            .where(processed_events.c.status == IN_PROGRESS)
            .where(processed_events.c.claimed_until == row.claimed_until)
            .values(claimed_until=until)
        )
        if took.rowcount != 1:
            raise RetryLater("event was claimed concurrently", delay=1)
        return None


def complete(engine: Engine, event_id: str, outcome: Outcome) -> None:
    """Record the outcome of a claimed event."""
    with db.write(engine) as conn:
        _finish(conn, event_id, outcome)


def release(engine: Engine, event_id: str) -> None:
    """Drop a claim whose effect failed, so a retry may claim it at once."""
    with db.write(engine) as conn:
        conn.execute(
            processed_events.delete()
            .where(processed_events.c.event_id == event_id)
            .where(processed_events.c.status == IN_PROGRESS)
        )
