"""Send attempts: what the email service knows about each confirmation it gave to SES.

SES has no idempotency key: an email it accepted cannot be looked up by our event id, and a
process killed between SES's answer and the record of it cannot tell whether the email
went out. So each attempt is written down (committed) before SES is called, every email
is sent with the stack's configuration set and tagged with its event id, and SES publishes
a "Send" event for each email it accepted to the `email-sends` queue, which the email
program consumes (`confirm`).

A redelivered event whose earlier attempt has no known outcome is then decided by that
record: confirmed (SES's answer or its Send event arrived) means sent, nothing to do; no
confirmation within `EMAIL_CONFIRM_SECONDS` of the attempt means SES never accepted it,
send again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
    update,
)

from pubsub_supervisor import db
from pubsub_supervisor.events import as_utc, utcnow

#: The DDL is in the email store's migrations (email0002).
email_sends = Table(
    "email_sends",
    MetaData(),
    Column("event_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    #: When the last attempt began; None when the last attempt was refused by SES.
    Column("attempted_at", DateTime(timezone=True)),
    #: SES's message id, from its answer or from its Send event.
    Column("ses_message_id", String(256)),
    Column("confirmed_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Attempt:
    """What is known of an event's send."""

    attempts: int
    attempted_at: datetime | None
    ses_message_id: str | None


def create_schema(engine: Engine) -> None:
    """Create the table in a scratch store (the service migrates its store instead)."""
    email_sends.metadata.create_all(engine)


def get(engine: Engine, event_id: str) -> Attempt | None:
    """The event's send so far, if it was ever attempted."""
    with db.read(engine) as conn:
        row = conn.execute(select(email_sends).where(email_sends.c.event_id == event_id)).first()
    if row is None:
        return None
    return Attempt(row.attempts, as_utc(row.attempted_at), row.ses_message_id)


def begin(engine: Engine, event_id: str, order_id: str, after: Attempt | None) -> bool:
    """Record an attempt, committed before SES is called; False when another consumer
    began one first (`after` is what this one saw: None, or the earlier attempt)."""
    now = utcnow()
    with db.write(engine) as conn:
        if after is None:
            query: Any = db.insert(conn, email_sends).values(
                event_id=event_id, order_id=order_id, attempts=1, attempted_at=now
            )
            inserted = query.on_conflict_do_nothing(index_elements=["event_id"]).returning(
                email_sends.c.event_id
            )
            return conn.execute(inserted).first() is not None
        changed = conn.execute(
            update(email_sends)
            .where(email_sends.c.event_id == event_id)
            .where(email_sends.c.attempts == after.attempts)
            .values(attempts=after.attempts + 1, attempted_at=now)
        )
        return changed.rowcount == 1


def refused(engine: Engine, event_id: str) -> None:
    """SES answered the attempt with an error: it sent nothing, a retry may send at once."""
    with db.write(engine) as conn:
        conn.execute(
            update(email_sends)
            .where(email_sends.c.event_id == event_id)
            .where(email_sends.c.ses_message_id.is_(None))
            .values(attempted_at=None)
        )


def accepted(engine: Engine, event_id: str, ses_message_id: str) -> None:
    """SES answered the attempt with its message id."""
    with db.write(engine) as conn:
        conn.execute(
            update(email_sends)
            .where(email_sends.c.event_id == event_id)
            .values(ses_message_id=ses_message_id)
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
