"""Public and operator surfaces of the web (web/access.py), in each of its three modes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pydantic import SecretStr

from pubsub_supervisor.settings import Settings
from tests.support.web_routes import OPERATOR_REQUESTS
from tests.unit.conftest import OPERATOR_PASSWORD, basic_auth, web_settings
from web import create_app
from web.access import OPERATOR_ENDPOINTS, PUBLIC_ENDPOINTS, mode_of

ORDER = {"customer_email": "ada@example.com", "items": [{"sku": "KB-001", "quantity": 1}]}
#: Nothing here calls AWS: a closed local port makes any call fail at once.
NOWHERE = "http://127.0.0.1:9"


def build(tmp_path: Path, **overrides: Any) -> Flask:
    return create_app(web_settings(tmp_path, **overrides))


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Flask]:
    """On AWS with an operator password."""
    app = build(tmp_path, operator_password=SecretStr(OPERATOR_PASSWORD))
    yield app
    app.extensions["pubsub"].close()


@pytest.fixture
def closed(tmp_path: Path) -> Iterator[Flask]:
    """On AWS without an operator password."""
    app = build(tmp_path)
    yield app
    app.extensions["pubsub"].close()


@pytest.fixture
def open_app(tmp_path: Path) -> Iterator[Flask]:
    """On an emulator without an operator password (`make dev`)."""
    app = build(tmp_path, aws_endpoint_url=NOWHERE)
    yield app
    app.extensions["pubsub"].close()


def test_every_route_is_classified_exactly_once(open_app: Flask) -> None:
    endpoints = {rule.endpoint for rule in open_app.url_map.iter_rules()}
    unclassified = endpoints - PUBLIC_ENDPOINTS - OPERATOR_ENDPOINTS
    assert not unclassified, f"add these to web/access.py, public or operator: {unclassified}"
    assert not PUBLIC_ENDPOINTS & OPERATOR_ENDPOINTS
    # No stale names: each listed endpoint exists.
    assert endpoints == PUBLIC_ENDPOINTS | OPERATOR_ENDPOINTS


def test_the_requests_below_cover_every_operator_route(open_app: Flask) -> None:
    adapter = open_app.url_map.bind("localhost")
    matched = {adapter.match(path, method)[0] for method, path in OPERATOR_REQUESTS}
    assert matched == OPERATOR_ENDPOINTS


def test_modes() -> None:
    assert mode_of(Settings(_env_file=None, aws_endpoint_url=NOWHERE)) == "open"  # type: ignore[call-arg]
    assert mode_of(Settings(_env_file=None, aws_endpoint_url=None)) == "closed"  # type: ignore[call-arg]
    with_password = Settings(  # type: ignore[call-arg]
        _env_file=None, aws_endpoint_url=NOWHERE, operator_password=SecretStr("s3cret")
    )
    assert mode_of(with_password) == "password"
    # An empty password is no password.
    assert web_settings(Path("."), operator_password="  ").operator_password is None


@pytest.mark.parametrize(("method", "path"), OPERATOR_REQUESTS)
def test_operator_routes_ask_for_credentials(guarded: Flask, method: str, path: str) -> None:
    client = guarded.test_client()
    for headers in (
        {},
        {"Authorization": basic_auth("operator", "wrong")},
        {"Authorization": basic_auth("admin", OPERATOR_PASSWORD)},
        {"Authorization": "Bearer " + OPERATOR_PASSWORD},
        {"Authorization": "Basic !!!not-base64"},
    ):
        response = client.open(path, method=method, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pubsub operator"'
        assert "ada@example.com" not in response.text


def test_operator_routes_answer_with_credentials(guarded: Flask) -> None:
    client = guarded.test_client()
    auth = {"Authorization": basic_auth("operator", OPERATOR_PASSWORD)}
    assert client.post("/api/orders", json=ORDER).status_code == 201
    listing = client.get("/api/orders", headers=auth)
    assert listing.status_code == 200
    assert listing.get_json()["orders"][0]["customer_email"] == "ada@example.com"
    for path in ("/orders", "/api/analytics", "/metrics"):
        assert client.get(path, headers=auth).status_code == 200, path


def test_api_401_is_json_and_page_401_is_html(guarded: Flask) -> None:
    client = guarded.test_client()
    api = client.get("/api/orders")
    assert api.is_json
    assert "operator" in api.get_json()["error"]
    page = client.get("/orders")
    assert page.mimetype == "text/html"
    assert "OPERATOR_PASSWORD" in page.text


@pytest.mark.parametrize(("method", "path"), OPERATOR_REQUESTS)
def test_operator_routes_are_closed_on_aws_without_a_password(
    closed: Flask, method: str, path: str
) -> None:
    response = closed.test_client().open(path, method=method)
    assert response.status_code == 404
    assert "WWW-Authenticate" not in response.headers


def test_public_routes_answer_anonymously_in_every_mode(
    guarded: Flask, closed: Flask, open_app: Flask
) -> None:
    for app in (guarded, closed, open_app):
        client = app.test_client()
        created = client.post("/api/orders", json=ORDER)
        assert created.status_code == 201
        order_id = created.get_json()["id"]
        assert client.get(f"/api/orders/{order_id}").status_code == 200
        assert client.get(f"/orders/{order_id}").status_code == 200
        assert client.get("/api/products").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/healthz").status_code == 200
        with client.get("/static/app.css") as static:
            assert static.status_code == 200


def test_open_mode_keeps_every_route_open(open_app: Flask) -> None:
    client = open_app.test_client()
    for path in ("/orders", "/api/orders", "/api/analytics", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_readiness_detail_is_for_operators_only(tmp_path: Path) -> None:
    app = build(tmp_path, aws_endpoint_url=NOWHERE, operator_password=OPERATOR_PASSWORD)
    try:
        client = app.test_client()
        anonymous = client.get("/readyz")
        operator = client.get(
            "/readyz", headers={"Authorization": basic_auth("operator", OPERATOR_PASSWORD)}
        )
    finally:
        app.extensions["pubsub"].close()
    # SQS and SNS are unreachable: not ready either way.
    assert anonymous.status_code == operator.status_code == 503
    assert anonymous.get_json() == {"status": "not ready"}
    assert "127.0.0.1:9" not in anonymous.text
    checks = operator.get_json()["checks"]
    assert checks["database"] == "ok"
    assert checks["sqs"].startswith("error: ")


def test_pages_link_operator_routes_for_operators_only(guarded: Flask) -> None:
    client = guarded.test_client()
    anonymous = client.get("/").text
    operator = client.get(
        "/", headers={"Authorization": basic_auth("operator", OPERATOR_PASSWORD)}
    ).text
    for path in ("/orders", "/pipeline", "/dlq", "/metrics"):
        assert f'href="{path}"' not in anonymous, path
        assert f'href="{path}"' in operator, path
