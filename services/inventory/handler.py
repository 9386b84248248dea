"""Reserve an order's stock in the inventory store, all or nothing, once per order."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    select,
    update,
)

from pubsub_supervisor import db, idempotency
from pubsub_supervisor.catalog import Product, load_catalog
from pubsub_supervisor.clients import AwsClients
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.events import OrderCreated
from pubsub_supervisor.idempotency import Outcome
from pubsub_supervisor.migrate import migrate
from pubsub_supervisor.settings import Settings

#: The DDL is in pubsub_supervisor/migrations/versions/inventory.
metadata = MetaData()
stock = Table(
    "stock",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("available", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, default=0),
)


class InventoryService:
    """Holds stock per SKU; an order takes all its lines or none."""

    def __init__(self, engine: Engine, catalog: dict[str, Product]) -> None:
        self.engine = engine
        migrate(engine, "inventory")
        self.seed(catalog)

    @classmethod
    def build(cls, settings: Settings, _clients: AwsClients) -> InventoryService:
        """From the settings."""
        return cls(
            make_engine(settings.database_url("inventory")), load_catalog(settings.catalog_path)
        )

    def seed(self, catalog: dict[str, Product]) -> None:
        """Add catalog SKUs the store does not know yet (existing stock is kept)."""
        rows = [{"sku": p.sku, "available": p.stock, "reserved": 0} for p in catalog.values()]
        if not rows:
            return
        with db.write(self.engine) as conn:
            # Instances starting together seed at once: the first insert of a SKU wins.
            conn.execute(db.insert(conn, stock).on_conflict_do_nothing(), rows)

    def levels(self) -> dict[str, int]:
        """Available stock by SKU."""
        with db.read(self.engine) as conn:
            rows = conn.execute(select(stock.c.sku, stock.c.available)).all()
            return {sku: level for sku, level in rows}

    def __call__(self, event: OrderCreated) -> Outcome:
        """Reserve every line or none; a repeated event changes nothing."""
        outcome, _first = idempotency.once_per_order(
            self.engine, event.event_id, event.order_id, lambda conn: self._reserve(conn, event)
        )
        return outcome

    def _reserve(self, conn: Connection, event: OrderCreated) -> Outcome:
        wanted: dict[str, int] = {}
        for item in event.items:
            wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
        # Lock the rows (PostgreSQL), always in SKU order so that two orders never wait on
        # each other; the check and the update then see the same stock.
        rows = conn.execute(
            select(stock.c.sku, stock.c.available)
            .where(stock.c.sku.in_(wanted))
            .order_by(stock.c.sku)
            .with_for_update()
        )
        available = {sku: level for sku, level in rows.all()}
        shortages = [
            f"{sku}: requested {qty}, available {available.get(sku, 0)}"
            for sku, qty in wanted.items()
            if available.get(sku, 0) < qty
        ]
        if shortages:
            return Outcome(
                "rejected",
                reason="insufficient stock for " + "; ".join(shortages),
                data={"stock": {sku: available.get(sku, 0) for sku in wanted}},
            )
        for sku, qty in sorted(wanted.items()):
            conn.execute(
                update(stock)
                .where(stock.c.sku == sku)
                .values(available=stock.c.available - qty, reserved=stock.c.reserved + qty)
            )
        return Outcome(
            "processed", data={"stock": {s: available[s] - q for s, q in wanted.items()}}
        )
