"""The JSON API: orders, products and analytics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, g, jsonify, request
from werkzeug.exceptions import HTTPException

from web import get_context, limits, store
from web.validation import MAX_CURSOR, parse_int, validate_order

bp = Blueprint("api", __name__, url_prefix="/api")

DEFAULT_PAGE = 20
MAX_PAGE = 100


def is_order_id(text: str) -> bool:
    """Could be an order id (hex, as `new_id` makes them): anything else is not looked up."""
    return 0 < len(text) <= 64 and text.isascii() and text.isalnum()


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def http_error(error: HTTPException) -> tuple[Response, int]:
    """Every API error is JSON, never an HTML page (registered on the app: routing
    errors such as 404 and 405 happen before a blueprint is chosen)."""
    response, status = _error(error.code or 500, error.description or error.name)
    # Keep the exception's own headers, such as the `Allow` a 405 must carry (RFC 9110).
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


@bp.post("/orders")
def create_order() -> tuple[Response, int]:
    """Accept an order: validate, store it with its event, answer 201.

    :raise 400: malformed JSON or not `application/json`.
    :raise 422: a field is invalid (`errors` lists each one).
    :raise 429: too many orders from this client address, or for this recipient.
    """
    if not request.is_json:
        return _error(400, "Content-Type must be application/json")
    try:
        payload = request.get_json(silent=True)
    except RecursionError:
        payload = None  # nested deeper than the parser goes: no order looks like that
    if payload is None:
        return _error(400, "request body is not valid JSON")
    context = get_context()
    order, errors = validate_order(payload, context.catalog, limits.order_limits(context.settings))
    if order is None:
        return jsonify({"errors": errors}), 422
    refusal = limits.recipient_refusal(context.engine, str(order.customer_email), context.settings)
    if refusal is not None:
        return _error(429, refusal)
    event = store.place_order(context.engine, order, context.catalog, g.trace_id)
    if context.commit_publisher is not None:
        context.commit_publisher.notify()
    body = store.get_order(context.engine, event.order_id)
    response = jsonify(body)
    response.headers["Location"] = f"/api/orders/{event.order_id}"
    return response, 201


@bp.get("/orders/<order_id>")
def get_order(order_id: str) -> Response:
    """One order with each service's status.

    :raise 404: no order has this id.
    """
    order = store.get_order(get_context().engine, order_id) if is_order_id(order_id) else None
    if order is None:
        abort(404, f"order {order_id} does not exist")
    return jsonify(order)


@bp.get("/orders")
def list_orders() -> Response | tuple[Response, int]:
    """Newest orders first; `?limit=` (1-100) and `?before=` (the `next` cursor)."""
    limit = parse_int(request.args.get("limit", str(DEFAULT_PAGE)), 1, MAX_PAGE)
    if limit is None:
        return _error(400, f"limit must be a whole number between 1 and {MAX_PAGE}")
    before = parse_int(request.args["before"], 1, MAX_CURSOR) if "before" in request.args else None
    if "before" in request.args and before is None:
        return _error(400, "before must be a cursor from a previous page's `next`")
    page, next_cursor = store.list_orders(get_context().engine, limit, before)
    return jsonify({"orders": page, "next": next_cursor})


@bp.get("/products")
def products() -> Response:
    """The catalog with current stock."""
    context = get_context()
    return jsonify({"products": store.products(context.engine, context.catalog)})


@bp.get("/analytics")
def analytics() -> Response:
    """The running aggregates the analytics service last reported."""
    summary = store.analytics(get_context().engine)
    return jsonify(summary or {"orders": 0, "revenue_cents": 0, "units_by_sku": {}})


@bp.get("/pipeline")
def pipeline() -> Response:
    """Queue depths, consumer counters, the outbox backlog and the analytics summary."""
    return jsonify(get_context().dashboard.snapshot())
