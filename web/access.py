"""Who may call which route: the public side (customers) and the operator side.

Every route is listed here as public or operator; a route in neither list is treated as an
operator route, and tests/unit/test_web_access.py fails until it is classified.

With OPERATOR_PASSWORD set, operator routes ask for HTTP Basic credentials (user
`operator`). Without it they are open on an emulator (a developer's machine) and answer
404 on AWS, where the web is meant to face the internet.
"""

from __future__ import annotations

import hmac
from typing import Literal

from flask import Flask, abort, g, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from pubsub_supervisor.settings import Settings

OPERATOR_USER = "operator"
REALM = "pubsub operator"

#: What an anonymous client may do: place an order, read one by its id, see the catalog
#: and the health probes (and the static files the pages load).
PUBLIC_ENDPOINTS = frozenset(
    {
        "api.create_order",
        "api.get_order",
        "api.products",
        "pages.order_form",
        "pages.place_order",
        "pages.order_page",
        "health.healthz",
        "health.readyz",
        "static",
    }
)
#: Customer data, business figures, dead letters and the means to move them.
OPERATOR_ENDPOINTS = frozenset(
    {
        "api.list_orders",
        "api.analytics",
        "api.pipeline",
        "pages.order_list",
        "pages.dashboard",
        "pages.dead_letters",
        "pages.redrive",
        "monitoring.scrape",
    }
)

Mode = Literal["password", "open", "closed"]


def mode_of(settings: Settings) -> Mode:
    """How operator routes are guarded under these settings."""
    if settings.operator_password is not None:
        return "password"
    return "open" if settings.on_emulator else "closed"


def _credentials_match(settings: Settings) -> bool:
    auth = request.authorization
    if settings.operator_password is None or auth is None or auth.type != "basic":
        return False
    # Both compared in constant time, and both always compared: no early answer.
    user_ok = hmac.compare_digest((auth.username or "").encode(), OPERATOR_USER.encode())
    password = settings.operator_password.get_secret_value().encode()
    password_ok = hmac.compare_digest((auth.password or "").encode(), password)
    return user_ok and password_ok


def is_operator() -> bool:
    """True when the current request may see operator detail (open mode or credentials)."""
    return bool(g.get("operator", False))


def init_app(app: Flask, settings: Settings) -> None:
    """Guard every operator route (call it before CSRF and the limits are set up: their
    hooks then run after this one)."""
    mode = mode_of(settings)

    def guard() -> None:
        g.operator = mode == "open" or (mode == "password" and _credentials_match(settings))
        endpoint = request.endpoint
        if endpoint is None or endpoint in PUBLIC_ENDPOINTS or g.operator:
            return
        if mode == "closed":
            # Nothing to see here: an unauthenticated internet client learns no route.
            abort(404)
        raise Unauthorized(
            description="This page is for operators: sign in as user 'operator' with "
            "OPERATOR_PASSWORD.",
            www_authenticate=WWWAuthenticate("basic", {"realm": REALM}),
        )

    app.before_request(guard)
