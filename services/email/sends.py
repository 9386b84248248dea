"""One record per confirmation: what the email service knows of each event's send.

SES has no idempotency key: an email it accepted cannot be looked up by our event id, and a
process killed between SES's answer and the record of it cannot tell whether the email
went out. So each attempt is written down (committed) before SES is called, every email
is sent with the stack's configuration set and tagged with its event id, and SES publishes
a "Send" event for each email it accepted to the `email-sends` queue, which the email
program consumes (`confirm`).

The record's `status`:
- `attempted`: an attempt began at `attempted_at`. While its lease (`claimed_until`) runs,
  a consumer is calling SES; after that (the consumer died, or lost SES's answer) SES's
  Send event decides: confirmed means sent, no confirmation within `EMAIL_CONFIRM_SECONDS`
  of the attempt means SES never accepted it, so it is sent again.
- `sent`: SES accepted the email (its answer, or its Send event after the answer was lost).
- `refused`: SES answered the attempt with an error: nothing went out, a retry sends at once.
- `rejected`: SES refused the email for good (the address, the message): nothing went out,
  nor ever will; every redelivery answers `rejected` with the reason.

One confirmation per order, too: `begin(..., per_order=True)` finds an order's record made
under another event id (the order replayed under a new one), and no second email goes out.

A confirmation costs two write transactions: `begin` (the claim and the attempt are the same
write, committed before SES is called) and `accepted` (SES's answer, which is the outcome).
Between processes sharing one PostgreSQL store, the primary key and a row lock decide which
consumer begins an attempt (see `begin`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    text,
    update,
)

from pubsub_supervisor import db
from pubsub_supervisor.events import as_utc, utcnow

ATTEMPTED = "attempted"
SENT = "sent"
REFUSED = "refused"
REJECTED = "rejected"

#: The DDL is in the email store's migrations (email0002 to email0004).
email_sends = Table(
    "email_sends",
    MetaData(),
    Column("event_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    #: `attempted`, `sent`, `refused` or `rejected`.
    Column("status", String(16), nullable=False),
    #: Why SES refused the last attempt.
    Column("reason", Text),
    Column("attempts", Integer, nullable=False),
    #: When the last attempt began.
    Column("attempted_at", DateTime(timezone=True)),
    #: Until when the consumer that began the last attempt is calling SES.
    Column("claimed_until", DateTime(timezone=True)),
    #: SES's message id, from its answer or from its Send event.
    Column("ses_message_id", String(256)),
    Column("confirmed_at", DateTime(timezone=True)),
)
#: An order's records, for `begin(..., per_order=True)` (email0004).
Index("ix_email_sends_order_id", email_sends.c.order_id)


@dataclass(frozen=True)
class Send:
    """What is known of an event's send."""

    status: str
    attempts: int
    attempted_at: datetime | None
    claimed_until: datetime | None
    ses_message_id: str | None
    reason: str | None = None


class Decision(enum.Enum):
    """What `begin` found, and so what the consumer does next."""

    #: An attempt began (this consumer holds its lease): call SES.
    SEND = "send"
    #: The confirmation went out before: nothing to do.
    SENT = "sent"
    #: An earlier attempt without an answer was confirmed by its Send event: now sent.
    RECOVERED = "recovered"
    #: Another consumer is calling SES for it: come back when its lease ends.
    BUSY = "busy"
    #: An earlier attempt has no answer and no Send event yet: wait for one.
    UNCONFIRMED = "unconfirmed"
    #: SES refused it for good: nothing to send, ever.
    REJECTED = "rejected"
    #: The order's confirmation is another event's (a replay of the order): never send.
    ANOTHER_EVENT = "another_event"


@dataclass(frozen=True)
class Start:
    """What `begin` decided, the record after it, and the record it found (None: new)."""

    decision: Decision
    send: Send
    found: Send | None


def _send(row: Any) -> Send:
    return Send(
        status=row.status,
        attempts=row.attempts,
        attempted_at=as_utc(row.attempted_at),
        claimed_until=as_utc(row.claimed_until),
        ses_message_id=row.ses_message_id,
        reason=row.reason,
    )


def create_schema(engine: Engine) -> None:
    """Create the table in a scratch store (the service migrates its store instead)."""
    email_sends.metadata.create_all(engine)


def get(engine: Engine, event_id: str) -> Send | None:
    """The event's send so far, if it was ever attempted."""
    with db.read(engine) as conn:
        row = conn.execute(select(email_sends).where(email_sends.c.event_id == event_id)).first()
    return None if row is None else _send(row)


def confirmation_due(
    attempted_at: datetime, confirm_seconds: float, listening_since: datetime | None = None
) -> datetime:
    """When silence about an attempt means SES never took it: `confirm_seconds` after the
    attempt, or after the Send events began to be read, whichever is later (events that
    arrived while no consumer was reading them, e.g. across a crash, still wait in the
    queue)."""
    start = attempted_at if listening_since is None else max(attempted_at, listening_since)
    return start + timedelta(seconds=confirm_seconds)


def decide(
    found: Send, now: datetime, confirm_seconds: float, listening_since: datetime | None = None
) -> Decision:
    """What a consumer does with an event whose record is `found`."""
    if found.status == SENT:
        return Decision.SENT
    if found.status == REJECTED:
        return Decision.REJECTED
    if found.claimed_until is not None and found.claimed_until > now:
        return Decision.BUSY
    if found.ses_message_id is not None:
        return Decision.RECOVERED  # its answer was lost, its Send event came
    if found.status != ATTEMPTED or found.attempted_at is None:
        return Decision.SEND  # refused: nothing went out
    if now < confirmation_due(found.attempted_at, confirm_seconds, listening_since):
        return Decision.UNCONFIRMED
    return Decision.SEND  # no Send event came: SES never took it


def begin(
    engine: Engine,
    event_id: str,
    order_id: str,
    *,
    lease_seconds: float,
    confirm_seconds: float,
    listening_since: datetime | None = None,
    per_order: bool = False,
) -> Start:
    """Begin an attempt under a lease, or settle one its Send event confirmed: one write.

    With `per_order`, an event without a record of its own whose order has one under
    another event id is `ANOTHER_EVENT`, with that record.
    """
    # Across processes on PostgreSQL, a concurrent first insert of the same event waits for
    # the first transaction's key, then inserts nothing and reads the committed record; the
    # row lock (FOR UPDATE) gives the decision on an existing record to one consumer at a
    # time. On SQLite the write lock taken at BEGIN IMMEDIATE does both.
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    attempt = {"status": ATTEMPTED, "reason": None, "attempted_at": now, "claimed_until": until}
    with db.write(engine) as conn:
        other = _other_event(conn, event_id, order_id) if per_order else None
        if other is not None:
            return Start(Decision.ANOTHER_EVENT, other, other)
        query: Any = db.insert(conn, email_sends).values(
            event_id=event_id, order_id=order_id, attempts=1, **attempt
        )
        # RETURNING, not rowcount: drivers need not report a rowcount for INSERT.
        inserted = query.on_conflict_do_nothing(index_elements=["event_id"]).returning(
            email_sends.c.event_id
        )
        if conn.execute(inserted).first() is not None:
            return Start(Decision.SEND, Send(ATTEMPTED, 1, now, until, None), None)
        found = _locked(conn, event_id)
        decision = decide(found, now, confirm_seconds, listening_since)
        send = found
        if decision is Decision.SEND:
            send = Send(ATTEMPTED, found.attempts + 1, now, until, found.ses_message_id)
            _set(conn, event_id, attempts=send.attempts, **attempt)
        elif decision is Decision.RECOVERED:
            send = Send(SENT, found.attempts, found.attempted_at, None, found.ses_message_id)
            _set(conn, event_id, status=SENT, reason=None, claimed_until=None)
        return Start(decision, send, found)


def _other_event(conn: Connection, event_id: str, order_id: str) -> Send | None:
    """The order's record under another event id, when this event has none of its own."""
    # On SQLite the write lock taken at BEGIN IMMEDIATE makes this check and the insert one
    # step; on PostgreSQL a lock on the order (until the transaction ends) does, so that two
    # events of one order arriving at once are decided one after the other.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": order_id})
    own = select(email_sends.c.event_id).where(email_sends.c.event_id == event_id)
    if conn.execute(own).first() is not None:
        return None
    row = conn.execute(
        select(email_sends)
        .where(email_sends.c.order_id == order_id, email_sends.c.event_id != event_id)
        .order_by(email_sends.c.attempted_at)
        .limit(1)
    ).first()
    return None if row is None else _send(row)


def _locked(conn: Connection, event_id: str) -> Send:
    # FOR UPDATE is not emitted on SQLite, whose write lock is already held.
    query = select(email_sends).where(email_sends.c.event_id == event_id).with_for_update()
    return _send(conn.execute(query).one())


def _set(conn: Connection, event_id: str, **values: Any) -> None:
    conn.execute(update(email_sends).where(email_sends.c.event_id == event_id).values(**values))


def accepted(engine: Engine, event_id: str, ses_message_id: str) -> None:
    """SES answered the attempt with its message id: the confirmation is sent."""
    with db.write(engine) as conn:
        _set(conn, event_id, status=SENT, ses_message_id=ses_message_id, claimed_until=None)


def refused(engine: Engine, event_id: str, attempt: int, reason: str) -> None:
    """SES answered the attempt with an error: it sent nothing, a retry may send at once."""
    with db.write(engine) as conn:
        conn.execute(
            _this_attempt(event_id, attempt)
            .where(email_sends.c.ses_message_id.is_(None))
            .values(status=REFUSED, reason=reason, claimed_until=None)
        )


def rejected(engine: Engine, event_id: str, attempt: int, reason: str) -> None:
    """SES refused the attempt for good: nothing went out, and nothing will."""
    with db.write(engine) as conn:
        conn.execute(
            _this_attempt(event_id, attempt)
            .where(email_sends.c.ses_message_id.is_(None))
            .values(status=REJECTED, reason=reason, claimed_until=None)
        )


def unanswered(engine: Engine, event_id: str, attempt: int) -> None:
    """No answer to the attempt (it may have gone out): free its lease for the retry."""
    with db.write(engine) as conn:
        conn.execute(_this_attempt(event_id, attempt).values(claimed_until=None))


def _this_attempt(event_id: str, attempt: int) -> Any:
    return (
        update(email_sends)
        .where(email_sends.c.event_id == event_id)
        .where(email_sends.c.attempts == attempt)
        .where(email_sends.c.status == ATTEMPTED)
    )


def confirm(engine: Engine, event_id: str, ses_message_id: str) -> bool:
    """SES's Send event for an email it accepted; False when no attempt is known for it
    (an email sent with the configuration set by someone else)."""
    with db.write(engine) as conn:
        done = conn.execute(
            update(email_sends)
            .where(email_sends.c.event_id == event_id)
            .values(
                # Keep the id SES answered with; take the event's when there was no answer.
                ses_message_id=func.coalesce(email_sends.c.ses_message_id, ses_message_id),
                confirmed_at=utcnow(),
            )
        )
        return bool(done.rowcount)
