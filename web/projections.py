"""What the web keeps from a service's results beyond its status: each service's registry
entry (`projection` in pubsub_supervisor/registry.py) names its function here.

A projection is `(Connection, ServiceResult) -> None`, run by the results consumer in the
transaction that records the result; results of one order and of others arrive
concurrently on several workers, so each one is an upsert.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache

from sqlalchemy import Connection

from pubsub_supervisor import db, registry
from pubsub_supervisor.events import ServiceResult, utcnow
from web.schema import analytics_snapshot, product_stock

Projection = Callable[[Connection, ServiceResult], None]


def stock(conn: Connection, result: ServiceResult) -> None:
    """Inventory's remaining stock per SKU, shown with the catalog."""
    levels = result.data.get("stock")
    if not isinstance(levels, dict):
        return
    for sku, remaining in sorted(levels.items()):
        query = db.insert(conn, product_stock).values(sku=sku, stock=int(remaining))
        conn.execute(
            query.on_conflict_do_update(
                index_elements=[product_stock.c.sku],
                set_={"stock": query.excluded.stock},
                # Stock only goes down: ignore stale reports.
                where=query.excluded.stock < product_stock.c.stock,
            )
        )


def analytics_summary(conn: Connection, result: ServiceResult) -> None:
    """Analytics' running summary, shown at /api/analytics and on the dashboard."""
    summary = result.data.get("summary")
    if not isinstance(summary, dict):
        return
    values = {
        "orders": int(summary.get("orders", 0)),
        "data": json.dumps(summary),
        "updated_at": utcnow(),
    }
    query = db.insert(conn, analytics_snapshot).values(id=1, **values)
    conn.execute(
        query.on_conflict_do_update(
            index_elements=[analytics_snapshot.c.id],
            set_=values,
            # Keep the newest summary when results arrive out of order.
            where=query.excluded.orders >= analytics_snapshot.c.orders,
        )
    )


@cache
def projection_for(service: str) -> Projection | None:
    """The registered projection of a service's results (None: status and reason only)."""
    try:
        spec = registry.get(service)
    except KeyError:
        return None
    if spec.projection is None:
        return None
    found: Projection = registry.resolve(spec.projection)
    return found


def apply(conn: Connection, result: ServiceResult) -> None:
    """Run the projection registered for the result's service, if any."""
    project = projection_for(result.service)
    if project is not None:
        project(conn, result)
