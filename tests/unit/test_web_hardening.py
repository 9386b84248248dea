"""Hostile input answers 4xx, never 5xx; failures show a trace id, not their detail;
metrics labels stay bounded; behind a proxy the web sees HTTPS and the client."""

from __future__ import annotations

import logging
import random
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from pubsub_supervisor import metrics
from tests.unit.conftest import web_settings
from web import create_app
from web.validation import parse_int, parse_quantity

ORDER = {"customer_email": "ada@example.com", "items": [{"sku": "KB-001", "quantity": 1}]}


def build(tmp_path: Path, **overrides: Any) -> Flask:
    values = {"aws_endpoint_url": "http://127.0.0.1:9", "order_rate_limit": "", **overrides}
    return create_app(web_settings(tmp_path, **values))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = build(tmp_path)
    yield app
    app.extensions["pubsub"].close()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12", 12),
        (" 7 ", 7),
        ("0", 0),
        ("-2", -2),
        ("²", None),
        ("٣", None),
        ("1_000", None),
        ("+5", None),
        ("1e3", None),
        ("", None),
        ("-", None),
        ("9" * 5000, None),
        ("1000001", None),
    ],
)
def test_one_strict_rule_for_form_quantities(raw: str, expected: int | None) -> None:
    assert parse_quantity(raw) == expected


def test_query_integers_are_range_checked() -> None:
    assert parse_int(str(2**63 - 1), 1, 2**63 - 1) == 2**63 - 1
    assert parse_int(str(2**63), 1, 2**63 - 1) is None
    assert parse_int("-1", 1, 10) is None
    assert parse_int("0", 1, 10) is None


def test_deeply_nested_json_is_a_400(app: Flask) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = app.test_client().post(
        "/api/orders", data=body[: 60 * 1024], content_type="application/json"
    )
    assert response.status_code == 400
    nested = '{"customer_email": ' + "[" * 20_000 + "]" * 20_000 + "}"
    response = app.test_client().post("/api/orders", data=nested, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": "request body is not valid JSON"}


@pytest.mark.parametrize(
    "path",
    [
        f"/orders?before={2**70}",
        "/orders?before=-5",
        "/orders?before=²",
        "/orders?before=1_0",
        f"/api/orders?before={2**64}",
        "/api/orders?limit=²",
        f"/api/orders?limit={'9' * 5000}",
    ],
)
def test_out_of_range_cursors_are_a_400(app: Flask, path: str) -> None:
    assert app.test_client().get(path).status_code == 400


def test_form_quantities_that_are_not_ascii_digits_are_field_errors(app: Flask) -> None:
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert token
    for raw in ("²", "٣", "1_0", "9" * 400):
        form = {"csrf_token": token.group(1), "customer_email": "a@example.com", "qty-KB-001": raw}
        response = client.post("/orders", data=form)
        assert response.status_code == 422, raw
        assert "Enter a whole number" in response.text


@pytest.mark.parametrize(
    "order_id", ["x" * 5000, "%00", "..%2F..%2Fetc", "%F0%9F%92%A5", "a b", "0" * 65]
)
def test_odd_order_ids_are_404(app: Flask, order_id: str) -> None:
    client = app.test_client()
    assert client.get(f"/api/orders/{order_id}").status_code == 404
    assert client.get(f"/orders/{order_id}").status_code == 404


def test_doubled_slashes_are_a_404_not_a_redirect_carrying_the_query(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/api/orders/%2F%00", query_string="\r").status_code == 404
    assert client.get("/api//products", query_string="\r").status_code == 404


def test_odd_headers_are_not_a_5xx(app: Flask) -> None:
    client = app.test_client()
    for headers in (
        {"traceparent": "x" * 5000},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},
        {"traceparent": "\u00e9\u00e9", "tracestate": "=,=" * 100},
        {"Content-Type": "application/json; charset=utf-7"},
        {"Authorization": "Basic \u00ff\u00ff"},
        {"Cookie": "session=" + "A" * 4000},
        {"X-Forwarded-For": "not-an-address"},
    ):
        assert client.post("/api/orders", json=ORDER, headers=headers).status_code < 500
        assert client.get("/", headers=headers).status_code < 500


def test_an_unexpected_failure_shows_the_trace_id_and_logs_the_detail(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> str:
        raise RuntimeError("secret detail arn:aws:iam::123456789012:role/app")

    app.add_url_rule("/boom", "boom", boom)
    app.add_url_rule("/api/boom", "api_boom", boom)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="web"):
        page = client.get("/boom")
        api = client.get("/api/boom")
    for response in (page, api):
        assert response.status_code == 500
        assert "123456789012" not in response.text
        assert response.headers["X-Trace-Id"] in response.text
    assert api.is_json
    assert "trace id" in api.get_json()["error"]
    assert page.mimetype == "text/html"
    logged = [r for r in caplog.records if r.getMessage() == "unexpected error"]
    assert len(logged) == 2
    assert "123456789012" in str(logged[0].exc_info)


def _series() -> int:
    return sum(len(family.samples) for family in metrics.HTTP_REQUESTS.collect())


def test_client_chosen_methods_and_paths_add_a_bounded_number_of_series(app: Flask) -> None:
    client = app.test_client()
    rng = random.Random(12)
    # Warm up: every (method label, unmatched) pair once.
    for method in ("GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        client.open("/nowhere", method=method)
    before = _series()
    for _ in range(200):
        method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
        path = "/" + "".join(rng.choices(string.ascii_lowercase + "/", k=rng.randint(1, 30)))
        client.open(path, method=method)
    assert _series() == before
    labels = {s.labels["method"] for f in metrics.HTTP_REQUESTS.collect() for s in f.samples}
    assert labels <= {"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}


def test_personal_data_is_never_cached(app: Flask) -> None:
    client = app.test_client()
    created = client.post("/api/orders", json=ORDER)
    order_id = created.get_json()["id"]
    for path in (f"/api/orders/{order_id}", f"/orders/{order_id}", "/orders", "/api/orders", "/"):
        assert client.get(path).headers["Cache-Control"] == "no-store", path
    assert created.headers["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/api/products").headers.get("Cache-Control", "")


def test_without_trusted_proxies_forwarded_headers_are_ignored(app: Flask) -> None:
    response = app.test_client().get(
        "/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    )
    assert "Strict-Transport-Security" not in response.headers
    assert "Secure" not in response.headers.get("Set-Cookie", "")


def test_behind_a_trusted_proxy_https_means_hsts_and_a_secure_cookie(tmp_path: Path) -> None:
    app = build(tmp_path, trusted_proxies=1, order_rate_limit="1/minute")
    try:
        client = app.test_client()
        # Fresh clients: a session cookie is set on the first page only.
        secure = app.test_client().get("/", headers={"X-Forwarded-Proto": "https"})
        plain = app.test_client().get("/", headers={"X-Forwarded-Proto": "http"})
        # The limit counts the client the proxy names, not the proxy.
        first = client.post("/api/orders", json=ORDER, headers={"X-Forwarded-For": "203.0.113.9"})
        again = client.post("/api/orders", json=ORDER, headers={"X-Forwarded-For": "203.0.113.9"})
        other = client.post("/api/orders", json=ORDER, headers={"X-Forwarded-For": "203.0.113.10"})
    finally:
        app.extensions["pubsub"].close()
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "; Secure" in secure.headers["Set-Cookie"]
    assert "Strict-Transport-Security" not in plain.headers
    assert "Secure" not in plain.headers["Set-Cookie"]
    assert (first.status_code, again.status_code, other.status_code) == (201, 429, 201)
