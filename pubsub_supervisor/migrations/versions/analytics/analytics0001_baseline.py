"""The analytics service's store: running aggregates and idempotency records.

Revision ID: analytics0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pubsub_supervisor import idempotency

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
    op.create_table(idempotency.TABLE, *idempotency.columns())


def downgrade() -> None:
    """Drop the tables."""
    for table in (idempotency.TABLE, "orders_per_minute", "units_by_sku", "totals"):
        op.drop_table(table)
