"""The email service's store: idempotency records of sent confirmations.

Revision ID: email0001
Revises:
"""

from __future__ import annotations

from alembic import op

from pubsub_supervisor import idempotency

revision = "email0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables."""
    op.create_table(idempotency.TABLE, *idempotency.columns())


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table(idempotency.TABLE)
