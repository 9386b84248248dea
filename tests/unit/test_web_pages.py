"""The HTML pages against a real SQLite store: form, CSRF, errors by field, headers."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy import func, select

from pubsub_supervisor.settings import Settings
from web import get_context
from web.schema import orders, outbox
from web.security import KEY_FILENAME, secret_key


def csrf_token(client: FlaskClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert match
    return match.group(1)


def stored(app: Flask) -> tuple[int, int]:
    with app.app_context():
        engine = get_context().engine
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(orders)).scalar_one(),
            conn.execute(select(func.count()).select_from(outbox)).scalar_one(),
        )


@pytest.mark.parametrize(
    "path", ["/", "/orders", "/api/orders", "/healthz", "/no-such-page", "/static/app.css"]
)
def test_every_response_carries_the_security_headers(client: FlaskClient, path: str) -> None:
    with client.get(path) as response:  # closes the static file it streams
        headers = response.headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_script_or_style(client: FlaskClient) -> None:
    token = csrf_token(client)
    placed = client.post(
        "/orders", data={"csrf_token": token, "customer_email": "a@example.com", "qty-KB-001": "1"}
    )
    for path in ("/", "/orders", placed.headers["Location"]):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"\sstyle=", html), path
        assert not re.search(r"\son[a-z]+=", html), path


def test_form_places_the_order_and_redirects_to_it(app: Flask, client: FlaskClient) -> None:
    response = client.post(
        "/orders",
        data={
            "csrf_token": csrf_token(client),
            "customer_email": "ada@example.com",
            "qty-KB-001": "2",
            "qty-MS-002": "0",
            "qty-CB-005": "",
        },
    )
    assert response.status_code == 303
    order_id = response.headers["Location"].rsplit("/", 1)[1]
    assert stored(app) == (1, 1)
    order = client.get(f"/api/orders/{order_id}").get_json()
    assert [(i["sku"], i["quantity"]) for i in order["items"]] == [("KB-001", 2)]
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert order_id[:8] in page.text
    assert "Order placed" in page.text  # the flash survives the redirect


def test_form_without_csrf_token_is_refused(app: Flask, client: FlaskClient) -> None:
    response = client.post("/orders", data={"customer_email": "a@example.com", "qty-KB-001": "1"})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    assert "CSRF" in response.text
    assert stored(app) == (0, 0)


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"customer_email": "nope", "qty-KB-001": "1"}, {"customer_email": "email address"}),
        ({"customer_email": "", "qty-KB-001": "1"}, {"customer_email": "Enter an email"}),
        ({"customer_email": "a@example.com"}, {"items": "Choose at least one product"}),
        ({"customer_email": "a@example.com", "qty-KB-001": "1.5"}, {"qty-KB-001": "whole"}),
        ({"customer_email": "a@example.com", "qty-KB-001": "-2"}, {"qty-KB-001": "greater"}),
        ({"customer_email": "a@example.com", "qty-LE-007": "1001"}, {"qty-LE-007": "1000"}),
        (
            {"customer_email": "x", "qty-KB-001": "a", "qty-MS-002": "2000"},
            {"customer_email": "email", "qty-KB-001": "whole", "qty-MS-002": "1000"},
        ),
    ],
)
def test_invalid_form_shows_each_error_beside_its_field(
    app: Flask, client: FlaskClient, fields: dict[str, str], errors: dict[str, str]
) -> None:
    response = client.post("/orders", data={"csrf_token": csrf_token(client), **fields})
    assert response.status_code == 422
    shown = dict(re.findall(r'<p class="error" id="([^"]+)-error">([^<]*)</p>', response.text))
    assert set(shown) == set(errors)
    for field, words in errors.items():
        assert words in shown[field], (field, shown[field])
        if field != "items":  # the input is marked and keeps what was typed
            assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', response.text, re.S)
    for value in fields.values():
        assert f'value="{value}"' in response.text
    assert stored(app) == (0, 0)


def test_unknown_order_page_is_an_html_404(client: FlaskClient) -> None:
    response = client.get("/orders/not-an-order")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "not-an-order does not exist" in response.text
    assert client.get("/api/orders/not-an-order").get_json()["error"]


def test_secret_key_is_made_once_and_shared(settings: Settings) -> None:
    first, second = secret_key(settings), secret_key(settings)
    assert first == second
    assert len(first) >= 32
    path = settings.data_dir / KEY_FILENAME
    assert path.stat().st_mode & 0o077 == 0  # readable by its owner only
    assert list(settings.data_dir.glob(".secret-*")) == []
    chosen = settings.model_copy(update={"web_secret_key": SecretStr("s" * 40)})
    assert secret_key(chosen) == "s" * 40
