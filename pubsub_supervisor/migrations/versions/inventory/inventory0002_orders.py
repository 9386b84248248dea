"""Once per order: `processed_orders` keeps each order's first outcome, whatever its event id.

Each order already handled gets the record of its earliest event (its first outcome).

Revision ID: inventory0002
Revises: inventory0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pubsub_supervisor import idempotency

revision = "inventory0002"
down_revision = "inventory0001"
branch_labels = None
depends_on = None

_events = sa.table(
    idempotency.TABLE,
    sa.column("event_id", sa.String),
    sa.column("order_id", sa.String),
    sa.column("status", sa.String),
    sa.column("reason", sa.Text),
    sa.column("data", sa.Text),
    sa.column("processed_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    """Create the table and record each order's first outcome."""
    orders = op.create_table(idempotency.ORDERS_TABLE, *idempotency.order_columns())
    conn = op.get_bind()
    first: dict[str, dict[str, object]] = {}
    done = sa.select(_events).where(_events.c.status != idempotency.IN_PROGRESS)
    for row in conn.execute(done.order_by(_events.c.processed_at, _events.c.event_id)):
        first.setdefault(row.order_id, dict(row._mapping))
    if first:
        conn.execute(sa.insert(orders), list(first.values()))


def downgrade() -> None:
    """Drop the table."""
    op.drop_table(idempotency.ORDERS_TABLE)
