"""An index of `email_sends` by order: one confirmation per order, whatever the event id.

Revision ID: email0004
Revises: email0003
"""

from __future__ import annotations

from alembic import op

revision = "email0004"
down_revision = "email0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the index."""
    op.create_index("ix_email_sends_order_id", "email_sends", ["order_id"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_email_sends_order_id", table_name="email_sends")
