"""What the web keeps from a service's results beyond its status: each service's registry
entry (`projection` in pubsub_supervisor/registry.py) names its function here.

A projection is `(Connection, ServiceResult) -> None`, run by the results consumer in the
transaction that records the result; results of one order and of others arrive
concurrently on several workers, so each one is an upsert.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from sqlalchemy import Connection, func, select

from pubsub_supervisor import db, registry
from pubsub_supervisor.bounds import MAX_COUNT, MAX_LINES, SUMMARY_MINUTES, SUMMARY_SKUS, Sku
from pubsub_supervisor.errors import PoisonMessage
from pubsub_supervisor.events import ServiceResult, utcnow
from web.schema import analytics_snapshot, order_items, orders, product_stock

Projection = Callable[[Connection, ServiceResult], None]

Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]


class MinuteCount(BaseModel):
    """Orders in one minute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minute: StrictStr = Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$")
    orders: Count


class Summary(BaseModel):
    """What analytics reports: totals, its best sellers and its last minutes, bounded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    orders: Count
    revenue_cents: Count
    units: Count
    average_order_cents: Count
    #: Units of the best-selling SKUs (at most SUMMARY_SKUS of them).
    units_by_sku: dict[Sku, Count] = Field(max_length=SUMMARY_SKUS)
    #: How many SKUs were ever sold (units_by_sku names the best sellers only).
    skus: Count = 0
    orders_per_minute: list[MinuteCount] = Field(max_length=SUMMARY_MINUTES + 1)


#: Inventory's report: the stock left of each SKU of the order.
_STOCK = TypeAdapter(Annotated[dict[Sku, Count], Field(max_length=MAX_LINES)])


def _invalid(result: ServiceResult, what: str, error: ValidationError) -> PoisonMessage:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or what
    return PoisonMessage(f"invalid {result.service} {what}: {where}: {first['msg']}")


def read_summary(data: str) -> dict[str, Any] | None:
    """A stored summary, or None when it is not one (a page shows none rather than fail)."""
    try:
        return Summary.model_validate_json(data).model_dump()
    except ValidationError:
        return None


def stock(conn: Connection, result: ServiceResult) -> None:
    """Inventory's remaining stock per SKU of the order, shown with the catalog.

    :raise PoisonMessage: for a report that is not a dict of the order's SKUs to counts.
    """
    if "stock" not in result.data:
        return
    try:
        levels = _STOCK.validate_python(result.data["stock"], strict=True)
    except ValidationError as error:
        raise _invalid(result, "stock", error) from None
    ordered = set(
        conn.execute(select(order_items.c.sku).where(order_items.c.order_id == result.order_id))
        .scalars()
        .all()
    )
    if not set(levels) <= ordered:
        strangers = sorted(set(levels) - ordered)[:3]
        raise PoisonMessage(f"invalid {result.service} stock: SKUs not in the order: {strangers}")
    for sku, remaining in sorted(levels.items()):
        query = db.insert(conn, product_stock).values(sku=sku, stock=remaining)
        conn.execute(
            query.on_conflict_do_update(
                index_elements=[product_stock.c.sku],
                set_={"stock": query.excluded.stock},
                # Stock only goes down: ignore stale reports.
                where=query.excluded.stock < product_stock.c.stock,
            )
        )


def analytics_summary(conn: Connection, result: ServiceResult) -> None:
    """Analytics' running summary, shown at /api/analytics and on the dashboard.

    :raise PoisonMessage: for a summary of another shape or past its bounds.
    """
    if "summary" not in result.data:
        return
    try:
        summary = Summary.model_validate(result.data["summary"], strict=True)
    except ValidationError as error:
        raise _invalid(result, "summary", error) from None
    placed = conn.execute(select(func.max(orders.c.seq))).scalar_one() or 0
    values = {
        # Analytics may count orders the web never took (`pubsub publish-sample --direct`),
        # so a larger count is no proof of forgery; but kept as the ordering key it would
        # hold back every true summary after it: the key is at most the web's order count.
        "orders": min(summary.orders, placed),
        "data": summary.model_dump_json(),
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
