"""Tables of the web's store: orders, their per-service status, the outbox, projections.

The DDL lives in the migrations (pubsub_supervisor/migrations/versions/web); a test checks
that the migrated schema matches these definitions.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("customer_email", String(254), nullable=False),
    Column("total_cents", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("trace_id", String(64), nullable=False),
)

order_items = Table(
    "order_items",
    metadata,
    Column("order_id", String(32), ForeignKey("orders.id"), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_cents", Integer, nullable=False),
)

order_services = Table(
    "order_services",
    metadata,
    Column("order_id", String(32), ForeignKey("orders.id"), primary_key=True),
    Column("service", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(32), nullable=False),
    Column("aggregate_id", String(32), nullable=False, index=True),
    Column("topic", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("attributes", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True)),
    Column("last_error", Text),
    #: The relay holding the row, until when: another relay takes it over after that.
    Column("claimed_by", String(64)),
    Column("claimed_until", DateTime(timezone=True)),
    UniqueConstraint("event_id", name="uq_outbox_event_id"),
)
#: The relay's scan: unpublished rows in order of creation.
Index("ix_outbox_pending", outbox.c.published_at, outbox.c.seq)

#: Projections of what the services report (the web never reads their stores).
product_stock = Table(
    "product_stock",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("stock", Integer, nullable=False),
)

analytics_snapshot = Table(
    "analytics_snapshot",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("orders", Integer, nullable=False),
    Column("data", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
