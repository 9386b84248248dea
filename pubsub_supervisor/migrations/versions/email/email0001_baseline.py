"""The email service's store: idempotency records of sent confirmations.

Revision ID: email0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "email0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables."""
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


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("processed_events")
