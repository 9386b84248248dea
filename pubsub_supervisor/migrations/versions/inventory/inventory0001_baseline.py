"""The inventory service's store: stock per SKU and idempotency records.

Revision ID: inventory0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pubsub_supervisor import idempotency

revision = "inventory0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "stock",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("available", sa.Integer, nullable=False),
        sa.Column("reserved", sa.Integer, nullable=False),
    )
    op.create_table(idempotency.TABLE, *idempotency.columns())


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table(idempotency.TABLE)
    op.drop_table("stock")
