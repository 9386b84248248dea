"""Once per order: `processed_orders` keeps each order's first outcome, whatever its event id.

Each order already handled gets the record of its earliest event (its first outcome).

Revision ID: analytics0002
Revises: analytics0001
"""

from __future__ import annotations

from alembic import op

from pubsub_supervisor import idempotency

revision = "analytics0002"
down_revision = "analytics0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table and record each order's first outcome."""
    idempotency.add_orders_table(op)


def downgrade() -> None:
    """Drop the table."""
    op.drop_table(idempotency.ORDERS_TABLE)
