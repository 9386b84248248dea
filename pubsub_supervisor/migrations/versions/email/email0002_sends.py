"""Send attempts: each confirmation's SES attempt, recorded before SES is called.

Revision ID: email0002
Revises: email0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "email0002"
down_revision = "email0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "email_sends",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True)),
        sa.Column("ses_message_id", sa.String(256)),
        sa.Column("confirmed_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("email_sends")
