"""One record per confirmation: `email_sends` takes the status and lease of `processed_events`.

Each row of `email_sends` gets its status from the two records: `sent` where the event's
`processed_events` record was processed (or SES's answer was lost but its Send event came:
`attempted` with a message id, settled by the redelivery), `refused` where the last attempt
was refused (no `attempted_at`), `attempted` otherwise, with the claim's lease while it was
in progress. A processed record without a send attempt (sent before email0002) becomes a
`sent` row. An `in_progress` record without an attempt stands for nothing sent, so it is
not carried over. Then `processed_events` is dropped: nothing in the email store reads it,
and a reader left behind fails on the missing table instead of counting stale rows.

Revision ID: email0003
Revises: email0002
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "email0003"
down_revision = "email0002"
branch_labels = None
depends_on = None

_processed = sa.table(
    "processed_events",
    sa.column("event_id", sa.String),
    sa.column("order_id", sa.String),
    sa.column("status", sa.String),
    sa.column("reason", sa.Text),
    sa.column("data", sa.Text),
    sa.column("claimed_until", sa.DateTime(timezone=True)),
    sa.column("processed_at", sa.DateTime(timezone=True)),
)
_sends = sa.table(
    "email_sends",
    sa.column("event_id", sa.String),
    sa.column("order_id", sa.String),
    sa.column("status", sa.String),
    sa.column("reason", sa.Text),
    sa.column("attempts", sa.Integer),
    sa.column("attempted_at", sa.DateTime(timezone=True)),
    sa.column("claimed_until", sa.DateTime(timezone=True)),
    sa.column("ses_message_id", sa.String),
    sa.column("confirmed_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    """Add the status and lease to `email_sends`, carry the records over, drop theirs."""
    with op.batch_alter_table("email_sends") as batch:
        batch.add_column(sa.Column("status", sa.String(16)))
        batch.add_column(sa.Column("reason", sa.Text))
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True)))
    record = sa.select(_processed.c.event_id).where(_processed.c.event_id == _sends.c.event_id)
    processed = record.where(_processed.c.status == "processed").exists()
    op.execute(_sends.update().where(processed).values(status="sent"))
    unset = _sends.c.status.is_(None)
    op.execute(
        _sends.update()
        .where(unset, _sends.c.attempted_at.is_(None), _sends.c.ses_message_id.is_(None))
        .values(status="refused")
    )
    lease = (
        sa.select(_processed.c.claimed_until)
        .where(_processed.c.event_id == _sends.c.event_id, _processed.c.status == "in_progress")
        .scalar_subquery()
    )
    op.execute(_sends.update().where(unset).values(status="attempted", claimed_until=lease))
    conn = op.get_bind()
    attempt = sa.select(_sends.c.event_id).where(_sends.c.event_id == _processed.c.event_id)
    without_attempt = conn.execute(
        sa.select(_processed).where(_processed.c.status == "processed", ~attempt.exists())
    )
    older = [
        {
            "event_id": r.event_id,
            "order_id": r.order_id,
            "status": "sent",
            "attempts": 1,
            "attempted_at": r.processed_at,
            "ses_message_id": json.loads(r.data or "{}").get("ses_message_id"),
        }
        for r in without_attempt
    ]
    if older:
        conn.execute(_sends.insert(), older)
    with op.batch_alter_table("email_sends") as batch:
        batch.alter_column("status", existing_type=sa.String(16), nullable=False)
    op.drop_table("processed_events")


def downgrade() -> None:
    """Split the records again: `processed_events` for the outcome and the lease."""
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    conn = op.get_bind()
    now = datetime.now(UTC)
    sends = conn.execute(sa.select(_sends)).all()
    records = [
        {
            "event_id": s.event_id,
            "order_id": s.order_id,
            "status": "processed" if s.status == "sent" else "in_progress",
            "reason": None,
            "data": json.dumps({"ses_message_id": s.ses_message_id} if s.status == "sent" else {}),
            "claimed_until": s.claimed_until,
            "processed_at": s.confirmed_at or s.attempted_at or now,
        }
        for s in sends
        if s.status == "sent" or s.claimed_until is not None
    ]
    if records:
        conn.execute(_processed.insert(), records)
    # The older record said "refused" with an empty attempted_at.
    conn.execute(_sends.update().where(_sends.c.status == "refused").values(attempted_at=None))
    with op.batch_alter_table("email_sends") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("reason")
        batch.drop_column("status")
