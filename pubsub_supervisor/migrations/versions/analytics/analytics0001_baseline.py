"""The analytics service's store: running aggregates and idempotency records.

Revision ID: analytics0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "analytics0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "totals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("orders", sa.Integer, nullable=False),
        sa.Column("revenue_cents", sa.Integer, nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
    )
    op.create_table(
        "units_by_sku",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("units", sa.Integer, nullable=False),
    )
    op.create_table(
        "orders_per_minute",
        sa.Column("minute", sa.String(16), primary_key=True),
        sa.Column("orders", sa.Integer, nullable=False),
    )
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
    for table in ("processed_events", "orders_per_minute", "units_by_sku", "totals"):
        op.drop_table(table)
