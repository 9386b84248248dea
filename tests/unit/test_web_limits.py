"""Abuse limits on intake (web/limits.py): per client address, per recipient, per order."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from pubsub_supervisor.events import utcnow
from pubsub_supervisor.settings import Settings
from tests.unit.conftest import web_settings
from web import create_app, get_context
from web.limits import orders_to_recipient
from web.schema import orders


def order(email: str = "ada@example.com", **quantities: int) -> dict[str, object]:
    items = [{"sku": sku.replace("_", "-"), "quantity": q} for sku, q in quantities.items()]
    return {"customer_email": email, "items": items or [{"sku": "KB-001", "quantity": 1}]}


def build(tmp_path: Path, **overrides: Any) -> Flask:
    return create_app(web_settings(tmp_path, aws_endpoint_url="http://127.0.0.1:9", **overrides))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = build(
        tmp_path,
        order_rate_limit="3/minute",
        max_orders_per_email_per_hour=100,
        max_quantity_per_line=5,
        max_units_per_order=8,
    )
    yield app
    app.extensions["pubsub"].close()


def csrf_token(client: FlaskClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert match
    return match.group(1)


def test_orders_per_address_are_limited_across_api_and_form(app: Flask) -> None:
    client = app.test_client()
    token = csrf_token(client)
    assert client.post("/api/orders", json=order("a@example.com")).status_code == 201
    form = {"csrf_token": token, "customer_email": "b@example.com", "qty-KB-001": "1"}
    assert client.post("/orders", data=form).status_code == 303
    assert client.post("/api/orders", json=order("c@example.com")).status_code == 201

    api = client.post("/api/orders", json=order("d@example.com"))
    assert api.status_code == 429
    assert api.is_json
    assert "Too many orders" in api.get_json()["error"]
    assert 0 < int(api.headers["Retry-After"]) <= 60
    page = client.post("/orders", data=form)
    assert page.status_code == 429
    assert page.mimetype == "text/html"
    assert "Too many orders" in page.text
    assert "Retry-After" in page.headers

    # Another client address has its own allowance.
    other = client.post(
        "/api/orders", json=order("e@example.com"), environ_base={"REMOTE_ADDR": "10.1.2.3"}
    )
    assert other.status_code == 201
    # Reading is not limited.
    assert client.get("/api/products").status_code == 200


def test_an_empty_rate_limit_turns_it_off(tmp_path: Path) -> None:
    app = build(tmp_path, order_rate_limit="", max_orders_per_email_per_hour=1000)
    try:
        client = app.test_client()
        codes = {client.post("/api/orders", json=order()).status_code for _ in range(40)}
    finally:
        app.extensions["pubsub"].close()
    assert codes == {201}


def test_a_rate_limit_that_does_not_parse_fails_at_start() -> None:
    with pytest.raises(ValueError, match="ORDER_RATE_LIMIT must read like"):
        Settings(_env_file=None, order_rate_limit="plenty")  # type: ignore[call-arg]


def test_confirmations_per_recipient_are_limited_per_hour(tmp_path: Path) -> None:
    app = build(tmp_path, order_rate_limit="", max_orders_per_email_per_hour=2)
    try:
        client = app.test_client()
        assert client.post("/api/orders", json=order("ada@example.com")).status_code == 201
        assert client.post("/api/orders", json=order("Ada@Example.com")).status_code == 201
        refused = client.post("/api/orders", json=order("ada@example.com"))
        assert refused.status_code == 429
        assert "in the last hour" in refused.get_json()["error"]
        assert client.post("/api/orders", json=order("bob@example.com")).status_code == 201

        token = csrf_token(client)
        form = {"csrf_token": token, "customer_email": "ada@example.com", "qty-KB-001": "1"}
        page = client.post("/orders", data=form)
        assert page.status_code == 429
        assert "in the last hour" in page.text

        # An hour later the address may receive mail again.
        with app.app_context():
            engine = get_context().engine
            with engine.begin() as conn:
                conn.execute(update(orders).values(created_at=utcnow() - timedelta(hours=2)))
            assert orders_to_recipient(engine, "ada@example.com") == 0
        assert client.post("/api/orders", json=order("ada@example.com")).status_code == 201
    finally:
        app.extensions["pubsub"].close()


def test_a_recipient_limit_of_zero_turns_it_off(tmp_path: Path) -> None:
    app = build(tmp_path, order_rate_limit="", max_orders_per_email_per_hour=0)
    try:
        client = app.test_client()
        codes = {client.post("/api/orders", json=order()).status_code for _ in range(15)}
    finally:
        app.extensions["pubsub"].close()
    assert codes == {201}


def test_quantity_per_line_and_units_per_order_come_from_the_settings(app: Flask) -> None:
    client = app.test_client()
    too_many = client.post("/api/orders", json=order(KB_001=6))
    assert too_many.status_code == 422
    assert too_many.get_json()["errors"] == [
        {"field": "items[0].quantity", "message": "Input should be less than or equal to 5"}
    ]
    too_many_units = client.post("/api/orders", json=order(KB_001=5, MS_002=4))
    assert too_many_units.status_code == 422
    [error] = too_many_units.get_json()["errors"]
    assert error["field"] == "items"
    assert "at most 8 units" in error["message"]
    assert client.post("/api/orders", json=order(KB_001=5, MS_002=3)).status_code == 201


def test_the_form_shows_the_units_limit(app: Flask) -> None:
    client = app.test_client()
    form = {
        "csrf_token": csrf_token(client),
        "customer_email": "ada@example.com",
        "qty-KB-001": "5",
        "qty-MS-002": "5",
    }
    response = client.post("/orders", data=form)
    assert response.status_code == 422
    assert "at most 8 units per order" in response.text
