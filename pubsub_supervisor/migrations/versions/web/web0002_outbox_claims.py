"""Outbox claims: a relay leases the rows it publishes, so several relays can run.

Revision ID: web0002
Revises: web0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "web0002"
down_revision = "web0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the claim columns."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64)))
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    """Drop the claim columns."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
