"""Property-based fuzz of what docs/openapi.yaml does not describe: the form posts, the
query strings and path segments of every page, and odd headers. No answer may be a 5xx.

FUZZ_EXAMPLES sets the examples per route (CI: 2000); the default keeps the unit tier quick.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import fuzz_settings
from web import create_app

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
#: The one 5xx a request may get: readiness while AWS (here a closed port) is away.
NOT_READY = ("/readyz", 503)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SKUS = ("KB-001", "MS-002", "MN-003", "HD-004", "CB-005", "LT-006", "LE-007")

#: Any text a client can put in a form or a URL (lone surrogates cannot be encoded at all).
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
numberish = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(["²", "٣", "1_000", "1e3", "+1", " 7 ", "0x10", "١٢", "-0", "", "NaN"]),
    text,
)
query = st.dictionaries(
    st.one_of(st.sampled_from(["before", "limit", "detail", "next"]), text),
    st.one_of(numberish, text),
    max_size=4,
)
raw_query = st.binary(max_size=60)
headers = st.dictionaries(
    st.sampled_from(
        ["traceparent", "tracestate", "Accept", "If-None-Match", "Range", "Authorization"]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60),
    max_size=3,
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    # On an emulator (a closed port: every AWS call fails at once), no password: every
    # route is open. No limits: the fuzz is after 5xx, not 429.
    app = create_app(fuzz_settings(tmp_path))
    # The fuzz is after what lies behind the CSRF check (which a forged token stops).
    app.config["WTF_CSRF_ENABLED"] = False
    yield app
    app.extensions["pubsub"].close()


def get_paths(app: Flask, segment: str) -> list[str]:
    """Every GET route of the app, with `segment` in each path variable."""
    paths = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint == "static":
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", quote(segment, safe=""))
        paths.append(path)
    return paths


@FUZZ
@given(fields=st.dictionaries(st.sampled_from([f"qty-{s}" for s in SKUS]), numberish))
def test_order_form_never_fails(app: Flask, fields: dict[str, str]) -> None:
    data = {"customer_email": "ada@example.com", **fields}
    response = app.test_client().post("/orders", data=data)
    assert response.status_code in (303, 422), (data, response.status_code)


@FUZZ
@given(
    fields=st.dictionaries(
        st.one_of(st.sampled_from(["customer_email", "csrf_token", "qty-KB-001"]), text),
        text,
        max_size=6,
    )
)
def test_order_form_with_any_fields_never_fails(app: Flask, fields: dict[str, str]) -> None:
    response = app.test_client().post("/orders", data=fields)
    assert response.status_code < 500, (fields, response.status_code)


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from(["dlq", "message_id", "csrf_token"]),
        st.one_of(st.sampled_from(["pubsub-email-dlq", "pubsub-web-dlq"]), text),
    )
)
def test_redrive_form_never_fails(app: Flask, fields: dict[str, str]) -> None:
    response = app.test_client().post("/dlq/redrive", data=fields)
    assert response.status_code < 500, (fields, response.status_code)


@FUZZ
@given(params=query, segment=text, extra=headers)
def test_every_page_with_any_query_never_fails(
    app: Flask, params: dict[str, str], segment: str, extra: dict[str, str]
) -> None:
    client = app.test_client()
    for path in get_paths(app, segment or "x"):
        response = client.get(path, query_string=params, headers=extra)
        if (path, response.status_code) != NOT_READY:
            assert response.status_code < 500, (path, params, extra, response.status_code)


@FUZZ
@given(raw=raw_query, segment=st.binary(min_size=1, max_size=30))
def test_every_page_with_raw_bytes_never_fails(app: Flask, raw: bytes, segment: bytes) -> None:
    client = app.test_client()
    for path in get_paths(app, segment.decode("latin-1")):
        response = client.get(path, query_string=raw.decode("latin-1"))
        if (path, response.status_code) != NOT_READY:
            assert response.status_code < 500, (path, raw, response.status_code)


@FUZZ
@given(method=st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ-"), min_size=1, max_size=12))
def test_any_method_on_any_route_never_fails(app: Flask, method: str) -> None:
    client = app.test_client()
    for path in [*get_paths(app, "x"), "/orders", "/dlq/redrive", "/api/orders"]:
        response = client.open(path, method=method)
        if (path, response.status_code) != NOT_READY:
            assert response.status_code < 500, (method, path, response.status_code)
