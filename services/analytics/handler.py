"""Keep running aggregates (orders, revenue, units per SKU, orders per minute), once per order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
)

from pubsub_supervisor import db, idempotency
from pubsub_supervisor.bounds import SUMMARY_MINUTES, SUMMARY_SKUS
from pubsub_supervisor.clients import AwsClients
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.events import OrderCreated, utcnow
from pubsub_supervisor.idempotency import Outcome
from pubsub_supervisor.migrate import migrate
from pubsub_supervisor.settings import Settings

#: The DDL is in pubsub_supervisor/migrations/versions/analytics.
metadata = MetaData()
totals = Table(
    "totals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("orders", Integer, nullable=False),
    Column("revenue_cents", Integer, nullable=False),
    Column("units", Integer, nullable=False),
)
units_by_sku = Table(
    "units_by_sku",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("units", Integer, nullable=False),
)
orders_per_minute = Table(
    "orders_per_minute",
    metadata,
    Column("minute", String(16), primary_key=True),  # "2026-11-27T09:41"
    Column("orders", Integer, nullable=False),
)


def _upsert_add(conn: Connection, table: Table, key: str, value: str, column: str, n: int) -> None:
    # One statement: consumers in other processes may create the same row concurrently.
    query = db.insert(conn, table).values({key: value, column: n})
    conn.execute(
        query.on_conflict_do_update(
            index_elements=[table.c[key]], set_={column: table.c[column] + query.excluded[column]}
        )
    )


class AnalyticsService:
    """Counts each order once; reports the running summary with every outcome."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine, "analytics")

    @classmethod
    def build(cls, settings: Settings, _clients: AwsClients) -> AnalyticsService:
        """From the settings."""
        return cls(make_engine(settings.database_url("analytics")))

    def __call__(self, event: OrderCreated) -> Outcome:
        """Add the order to the aggregates unless it was counted already."""
        outcome, _first = idempotency.once_per_order(
            self.engine, event.event_id, event.order_id, lambda conn: self._count(conn, event)
        )
        return outcome

    def _count(self, conn: Connection, event: OrderCreated) -> Outcome:
        units = sum(item.quantity for item in event.items)
        # Rows are touched in one order (totals, SKUs sorted, minute), so concurrent
        # transactions on PostgreSQL queue behind each other instead of deadlocking.
        query = db.insert(conn, totals).values(
            id=1, orders=1, revenue_cents=event.total_cents, units=units
        )
        conn.execute(
            query.on_conflict_do_update(
                index_elements=[totals.c.id],
                set_={
                    "orders": totals.c.orders + 1,
                    "revenue_cents": totals.c.revenue_cents + event.total_cents,
                    "units": totals.c.units + units,
                },
            )
        )
        by_sku: dict[str, int] = {}
        for item in event.items:
            by_sku[item.sku] = by_sku.get(item.sku, 0) + item.quantity
        for sku, quantity in sorted(by_sku.items()):
            _upsert_add(conn, units_by_sku, "sku", sku, "units", quantity)
        minute = event.occurred_at.strftime("%Y-%m-%dT%H:%M")
        _upsert_add(conn, orders_per_minute, "minute", minute, "orders", 1)
        return Outcome("processed", data={"summary": summary(conn)})


def summary(conn: Connection) -> dict[str, Any]:
    """The aggregates as the web shows them: totals, the SUMMARY_SKUS best sellers (and
    how many SKUs sold), the last SUMMARY_MINUTES minutes."""
    row = conn.execute(select(totals).where(totals.c.id == 1)).first()
    orders, revenue, units = (row.orders, row.revenue_cents, row.units) if row else (0, 0, 0)
    since = (utcnow() - timedelta(minutes=SUMMARY_MINUTES)).strftime("%Y-%m-%dT%H:%M")
    per_minute = conn.execute(
        select(orders_per_minute)
        .where(orders_per_minute.c.minute >= since)
        # The newest ones, however many minutes ahead a (forged) event claimed to be.
        .order_by(orders_per_minute.c.minute.desc())
        .limit(SUMMARY_MINUTES + 1)
    ).all()[::-1]
    # The best sellers only: the summary travels with every result, and SNS takes 256 KiB.
    best = conn.execute(
        select(units_by_sku)
        .order_by(units_by_sku.c.units.desc(), units_by_sku.c.sku)
        .limit(SUMMARY_SKUS)
    ).all()
    by_sku = sorted(best, key=lambda r: r.sku.lower())
    skus = conn.execute(select(func.count()).select_from(units_by_sku)).scalar_one()
    return {
        "orders": orders,
        "revenue_cents": revenue,
        "units": units,
        "average_order_cents": revenue // orders if orders else 0,
        "units_by_sku": {r.sku: r.units for r in by_sku},
        "skus": skus,
        "orders_per_minute": [{"minute": r.minute, "orders": r.orders} for r in per_minute],
    }


def read_summary(engine: Engine) -> dict[str, Any]:
    """The current aggregates, read from the store."""
    with db.read(engine) as conn:
        return summary(conn)
