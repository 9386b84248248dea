"""Reads and writes of the web's store: an order and its event commit together."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from pubsub_supervisor import db, logs, tracing
from pubsub_supervisor.catalog import Product
from pubsub_supervisor.events import (
    OrderCreated,
    OrderItem,
    ServiceResult,
    as_utc,
    encode,
    message_attributes,
    new_id,
    utcnow,
)
from pubsub_supervisor.migrate import migrate
from pubsub_supervisor.settings import SERVICE_NAMES
from web import projections
from web.schema import (
    analytics_snapshot,
    order_items,
    order_services,
    orders,
    outbox,
    product_stock,
)
from web.validation import OrderIn

log = logging.getLogger(__name__)

#: Outbox topic key of order events (the relay maps it to the topic ARN).
ORDER_EVENTS = "order_events"

#: A service's final statuses: no later result changes them.
_FINAL = ("processed", "rejected")


def create_schema(engine: Engine) -> None:
    """Migrate the store to the newest schema."""
    migrate(engine, "web")


def place_order(
    engine: Engine, request: OrderIn, catalog: dict[str, Product], trace_id: str
) -> OrderCreated:
    """Store the order, its pending statuses and its `order.created` event in one transaction."""
    items = tuple(
        OrderItem(
            sku=line.sku,
            name=catalog[line.sku].name,
            quantity=line.quantity,
            unit_price_cents=catalog[line.sku].price_cents,
        )
        for line in request.items
    )
    event = OrderCreated(
        order_id=new_id(),
        customer_email=str(request.customer_email),
        items=items,
        trace_id=trace_id,
    )
    now = event.occurred_at
    with db.write(engine) as conn:
        conn.execute(
            insert(orders).values(
                id=event.order_id,
                customer_email=event.customer_email,
                total_cents=event.total_cents,
                created_at=now,
                trace_id=trace_id,
            )
        )
        conn.execute(
            insert(order_items),
            [
                {"order_id": event.order_id, "line": i, **item.model_dump()}
                for i, item in enumerate(items)
            ],
        )
        conn.execute(
            insert(order_services),
            [
                {"order_id": event.order_id, "service": s, "status": "pending", "updated_at": now}
                for s in SERVICE_NAMES
            ],
        )
        conn.execute(
            insert(outbox).values(
                event_id=event.event_id,
                aggregate_id=event.order_id,
                topic=ORDER_EVENTS,
                body=encode(event),
                # With the request's trace context: the relay's publish continues it.
                attributes=json.dumps(tracing.with_context(message_attributes(event))),
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )
    with logs.bound(order_id=event.order_id, event_id=event.event_id, trace_id=trace_id):
        log.info("order accepted", extra={"total_cents": event.total_cents})
    return event


def overall_status(services: dict[str, dict[str, Any]]) -> str:
    """One word for the whole order, from each service's status."""
    statuses = {s["status"] for s in services.values()}
    if "failed" in statuses:
        return "failed"
    if "rejected" in statuses:
        return "rejected" if statuses <= {"processed", "rejected"} else "pending"
    if statuses == {"processed"}:
        return "processed"
    return "pending"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def _orders_json(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """The JSON of these orders, in their order: three more queries, however many rows."""
    ids = [row.id for row in rows]
    if not ids:
        return []
    items: dict[str, list[dict[str, Any]]] = {order_id: [] for order_id in ids}
    for i in conn.execute(
        select(order_items)
        .where(order_items.c.order_id.in_(ids))
        .order_by(order_items.c.order_id, order_items.c.line)
    ):
        items[i.order_id].append(
            {
                "sku": i.sku,
                "name": i.name,
                "quantity": i.quantity,
                "unit_price_cents": i.unit_price_cents,
            }
        )
    services: dict[str, dict[str, dict[str, Any]]] = {order_id: {} for order_id in ids}
    for s in conn.execute(
        select(order_services)
        .where(order_services.c.order_id.in_(ids))
        .order_by(order_services.c.order_id, order_services.c.service)
    ):
        services[s.order_id][s.service] = {
            "status": s.status,
            "reason": s.reason,
            "updated_at": _iso(s.updated_at),
        }
    published: dict[str, datetime | None] = {}
    for event in conn.execute(
        select(outbox.c.aggregate_id, outbox.c.published_at)
        .where(outbox.c.aggregate_id.in_(ids))
        .order_by(outbox.c.seq)
    ):
        # An order's event is its first (and only) outbox row.
        published.setdefault(event.aggregate_id, event.published_at)
    return [
        {
            "id": row.id,
            "status": overall_status(services[row.id]),
            "customer_email": row.customer_email,
            "total_cents": row.total_cents,
            "created_at": _iso(row.created_at),
            "trace_id": row.trace_id,
            "published": published.get(row.id) is not None,
            "published_at": _iso(published.get(row.id)),
            "items": items[row.id],
            "services": services[row.id],
        }
        for row in rows
    ]


def get_order(engine: Engine, order_id: str) -> dict[str, Any] | None:
    """An order with its items and per-service status, or None."""
    with db.read(engine) as conn:
        rows = conn.execute(select(orders).where(orders.c.id == order_id)).all()
        page = _orders_json(conn, rows)
    return page[0] if page else None


def list_orders(
    engine: Engine, limit: int, before: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest orders first; returns the page and the cursor of the next page."""
    query = select(orders).order_by(orders.c.seq.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(orders.c.seq < before)
    with db.read(engine) as conn:
        rows = conn.execute(query).all()
        page = _orders_json(conn, rows[:limit])
    next_cursor = rows[limit - 1].seq if len(rows) > limit else None
    return page, next_cursor


def apply_result(engine: Engine, result: ServiceResult) -> bool:
    """Record a service's outcome; returns False for an unknown order.

    A state never moves backwards: `processed` and `rejected` are final, `failed` gives way
    only to a later result (a redrive's), and `pending` is where every order starts, so a
    result saying it changes nothing.
    """
    if result.status == "pending":
        return order_exists(engine, result.order_id)
    with db.write(engine) as conn:
        if conn.execute(select(orders.c.id).where(orders.c.id == result.order_id)).first() is None:
            return False
        conn.execute(
            update(order_services)
            .where(order_services.c.order_id == result.order_id)
            .where(order_services.c.service == result.service)
            .where(order_services.c.status.not_in(_FINAL))
            .values(status=result.status, reason=result.reason, updated_at=utcnow())
        )
        # Whatever the status did: the data is checked (poison when malformed) and each
        # projection keeps only what moves forward (stock down, the newest summary).
        _apply_projections(conn, result)
    return True


def order_exists(engine: Engine, order_id: str) -> bool:
    """Whether the store has this order."""
    with db.read(engine) as conn:
        return conn.execute(select(orders.c.id).where(orders.c.id == order_id)).first() is not None


def _apply_projections(conn: Connection, result: ServiceResult) -> None:
    # Each service's registry entry names its projection (web/projections.py).
    projections.apply(conn, result)


def products(engine: Engine, catalog: dict[str, Product]) -> list[dict[str, Any]]:
    """The catalog with the latest stock inventory reported."""
    with db.read(engine) as conn:
        rows = conn.execute(select(product_stock.c.sku, product_stock.c.stock)).all()
        # Only counts: a stored value of any other kind leaves the catalog's figure.
        stock = {sku: level for sku, level in rows if type(level) is int and level >= 0}
    return [{**p.model_dump(), "stock": stock.get(p.sku, p.stock)} for p in catalog.values()]


def analytics(engine: Engine) -> dict[str, Any] | None:
    """The latest summary the analytics service reported, if any."""
    with db.read(engine) as conn:
        row = conn.execute(select(analytics_snapshot).where(analytics_snapshot.c.id == 1)).first()
    summary = None if row is None else projections.read_summary(row.data)
    if row is None or summary is None:
        # None yet, or a stored value that is no summary: the pages show none.
        return None
    return {**summary, "reported_at": _iso(row.updated_at)}


def outbox_backlog(engine: Engine) -> int:
    """Events committed but not yet published."""
    with db.read(engine) as conn:
        query = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        return int(conn.execute(query).scalar_one())
