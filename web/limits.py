"""Abuse limits on intake: orders per client address, confirmations per recipient.

The per-address limit is Flask-Limiter's, counted in RATE_LIMIT_STORAGE_URI: `memory://`
counts in each process (each gunicorn worker and each instance lets a client through
ORDER_RATE_LIMIT on its own), a shared store such as Redis counts for all of them. The
per-recipient limit is counted from the web's store, so it holds across every instance
that shares the store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from sqlalchemy import Engine, func, select

from pubsub_supervisor import db
from pubsub_supervisor.events import utcnow
from pubsub_supervisor.settings import Settings
from web.schema import orders
from web.validation import OrderLimits

#: The routes that place an order; they share one counter per client address.
ORDER_ENDPOINTS = ("api.create_order", "pages.place_order")
#: Window of MAX_ORDERS_PER_EMAIL_PER_HOUR.
EMAIL_WINDOW = timedelta(hours=1)


def order_limits(settings: Settings) -> OrderLimits:
    """The quantity bounds the settings set."""
    return OrderLimits(
        per_line=settings.max_quantity_per_line, per_order=settings.max_units_per_order
    )


def orders_to_recipient(engine: Engine, email: str, window: timedelta = EMAIL_WINDOW) -> int:
    """Orders placed for this recipient address (case-insensitive) within `window`."""
    since = utcnow() - window
    query = (
        select(func.count())
        .select_from(orders)
        .where(func.lower(orders.c.customer_email) == email.lower())
        .where(orders.c.created_at >= since)
    )
    with db.read(engine) as conn:
        return int(conn.execute(query).scalar_one())


def recipient_refusal(engine: Engine, email: str, settings: Settings) -> str | None:
    """Why one more order for `email` is refused now, or None when it may be placed."""
    allowed = settings.max_orders_per_email_per_hour
    if not allowed or orders_to_recipient(engine, email) < allowed:
        return None
    return (
        f"{email} has been sent {allowed} order confirmation(s) in the last hour, the most "
        "one address may receive: try again later or use another address"
    )


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Limit the order routes per client address (after ProxyFix, so behind a proxy the
    address is the client's, not the proxy's)."""
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.rate_limit_storage_uri,
        headers_enabled=True,
        # The store being down must not stop orders: count nothing rather than fail them.
        swallow_errors=True,
    )
    rule = settings.order_rate_limit
    shared = limiter.shared_limit(rule or "1/second", scope="orders", exempt_when=lambda: not rule)
    for endpoint in ORDER_ENDPOINTS:
        view: Callable[..., Any] = app.view_functions[endpoint]
        app.view_functions[endpoint] = shared(view)
    return limiter
