"""The order API against a real SQLite store (no AWS call happens while accepting)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from web import get_context, store
from web.schema import orders, outbox
from web.validation import OrderIn

VALID = {"customer_email": "ada@example.com", "items": [{"sku": "KB-001", "quantity": 2}]}


def counts(app: Flask) -> tuple[int, int]:
    with app.app_context():
        engine = get_context().engine
    with engine.connect() as conn:
        n_orders = conn.execute(select(func.count()).select_from(orders)).scalar_one()
        n_events = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
    return n_orders, n_events


def test_order_is_stored_with_its_event(app: Flask, client: FlaskClient) -> None:
    response = client.post("/api/orders", json=VALID)
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/orders/{body['id']}"
    assert body["status"] == "pending"
    assert body["total_cents"] == 2 * 8900
    assert set(body["services"]) == {"email", "inventory", "analytics"}
    assert counts(app) == (1, 1)
    fetched = client.get(f"/api/orders/{body['id']}").get_json()
    assert fetched["id"] == body["id"]
    assert fetched["items"] == [
        {"sku": "KB-001", "name": "Mechanical keyboard", "quantity": 2, "unit_price_cents": 8900}
    ]


def test_event_in_outbox_is_versioned_json(app: Flask, client: FlaskClient) -> None:
    order_id = client.post("/api/orders", json=VALID).get_json()["id"]
    with app.app_context():
        engine = get_context().engine
    with engine.connect() as conn:
        row = conn.execute(select(outbox)).one()
    event = json.loads(row.body)
    assert event["schema_version"] == 1
    assert event["event_type"] == "order.created"
    assert event["order_id"] == order_id
    assert event["items"][0]["unit_price_cents"] == 8900
    assert json.loads(row.attributes)["event_id"]["StringValue"] == event["event_id"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**VALID, "customer_email": "not-an-email"}, "customer_email"),
        ({**VALID, "customer_email": 42}, "customer_email"),
        ({"items": VALID["items"]}, "customer_email"),
        ({**VALID, "items": []}, "items"),
        ({**VALID, "items": "KB-001"}, "items"),
        ({**VALID, "items": [{"sku": "NOPE", "quantity": 1}]}, "items[0].sku"),
        ({**VALID, "items": [{"sku": "KB-001", "quantity": 0}]}, "items[0].quantity"),
        ({**VALID, "items": [{"sku": "KB-001", "quantity": -3}]}, "items[0].quantity"),
        ({**VALID, "items": [{"sku": "KB-001", "quantity": 10**9}]}, "items[0].quantity"),
        ({**VALID, "items": [{"sku": "KB-001", "quantity": "2"}]}, "items[0].quantity"),
        ({**VALID, "items": [{"sku": "KB-001", "quantity": 1.5}]}, "items[0].quantity"),
        ({**VALID, "items": [{"sku": "KB-001", "quantity": True}]}, "items[0].quantity"),
        ({**VALID, "items": [{"sku": "KB-001"}]}, "items[0].quantity"),
        ({**VALID, "items": [{"sku": "KB-001", "quantity": 1, "x": 1}]}, "items[0].x"),
        (
            {
                **VALID,
                "items": [{"sku": "KB-001", "quantity": 1}, {"sku": "KB-001", "quantity": 1}],
            },
            "items[1].sku",
        ),
        ({**VALID, "coupon": "FREE"}, "coupon"),
        ([VALID], "body"),
        ("just a string", "body"),
    ],
)
def test_invalid_order_is_422_and_stores_nothing(
    app: Flask, client: FlaskClient, payload: Any, field: str
) -> None:
    response = client.post("/api/orders", json=payload)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert field in {e["field"] for e in errors}
    assert all(e["message"] for e in errors)
    assert counts(app) == (0, 0)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ("", "application/json"),
        (json.dumps(VALID), "text/plain"),
        ("customer_email=a@example.com", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_or_wrong_type_is_400(
    app: Flask, client: FlaskClient, data: str, content_type: str
) -> None:
    response = client.post("/api/orders", data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json()["error"]
    assert counts(app) == (0, 0)


def test_oversized_body_is_413_json(app: Flask, client: FlaskClient) -> None:
    response = client.post("/api/orders", data="x" * (256 * 1024), content_type="application/json")
    assert response.status_code == 413
    assert "error" in response.get_json()
    assert counts(app) == (0, 0)


def test_unknown_order_is_404_json(client: FlaskClient) -> None:
    response = client.get("/api/orders/does-not-exist")
    assert response.status_code == 404
    assert "does-not-exist" in response.get_json()["error"]


def test_list_is_paginated_newest_first(client: FlaskClient) -> None:
    ids = [client.post("/api/orders", json=VALID).get_json()["id"] for _ in range(5)]
    first = client.get("/api/orders?limit=2").get_json()
    assert [o["id"] for o in first["orders"]] == ids[::-1][:2]
    second = client.get(f"/api/orders?limit=2&before={first['next']}").get_json()
    assert [o["id"] for o in second["orders"]] == ids[::-1][2:4]
    assert client.get("/api/orders?limit=0").status_code == 400
    assert client.get("/api/orders?limit=abc").status_code == 400
    assert client.get(f"/api/orders?before={2**70}").status_code == 400
    assert client.get("/api/orders?before=-1").status_code == 400


def test_products_list_the_catalog(client: FlaskClient) -> None:
    products = client.get("/api/products").get_json()["products"]
    assert {"sku", "name", "price_cents", "stock"} <= set(products[0])
    assert "KB-001" in {p["sku"] for p in products}


def test_wrong_method_is_405_json(client: FlaskClient) -> None:
    response = client.delete("/api/orders")
    assert response.status_code == 405
    assert response.get_json()["error"]
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_healthz_answers(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_a_page_of_orders_takes_the_same_few_queries_whatever_its_size(app: Flask) -> None:
    with app.app_context():
        context = get_context()
    engine, catalog = context.engine, context.catalog
    placed = [
        store.place_order(
            engine,
            OrderIn.model_validate({**VALID, "items": [{"sku": "KB-001", "quantity": n % 5 + 1}]}),
            catalog,
            trace_id=f"trace-{n}",
        )
        for n in range(101)
    ]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def queries(limit: int) -> int:
        statements.clear()
        page, _next = store.list_orders(engine, limit, None)
        assert len(page) == limit
        return sum(1 for s in statements if s.lstrip().upper().startswith("SELECT"))

    # One query for the orders, then one each for their items, statuses and events.
    assert queries(1) == queries(100) == 4
    page, _next = store.list_orders(engine, 100, None)
    # Each order gets its own lines, whatever the others on its page have.
    newest = placed[::-1][:100]
    assert [o["id"] for o in page] == [e.order_id for e in newest]
    assert [o["items"][0]["quantity"] for o in page] == [e.items[0].quantity for e in newest]
    assert all(set(o["services"]) == {"email", "inventory", "analytics"} for o in page)
    statements.clear()
    assert store.get_order(engine, placed[1].order_id) == page[-1]
    assert sum(1 for s in statements if s.lstrip().upper().startswith("SELECT")) == 4
