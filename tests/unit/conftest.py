"""Fixtures of the unit tier's web tests."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from pydantic import SecretStr

from pubsub_supervisor import tracing
from pubsub_supervisor.settings import Settings
from web import create_app

OPERATOR_PASSWORD = "unit-operator-password"

#: Every span the unit tests record. The provider is the process's one (set once), made
#: here before any test runs `tracing.init`, which keeps it: spans are recorded as with an
#: endpoint configured, and exported to memory.
SPANS = InMemorySpanExporter()
_provider = TracerProvider(sampler=tracing.EntrySpans(ParentBased(ALWAYS_ON)))
_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_provider)


_getaddrinfo = socket.getaddrinfo
#: Names the unit tier may resolve: everything it talks to is on this machine.
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier never leaves the machine. A test whose settings mean real AWS (no
    endpoint) fails to resolve AWS's names at once, as on a machine without a network,
    instead of asking DNS (and waiting on it, or reaching AWS)."""

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"the unit tests are offline: {name}")
        return _getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def _no_spans_kept() -> Iterator[None]:
    """Each test starts with no recorded spans (and leaves none behind)."""
    SPANS.clear()
    yield
    SPANS.clear()


def basic_auth(user: str, password: str) -> str:
    """An HTTP Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def operator_settings(settings: Settings) -> Settings:
    """The test's settings (real AWS, no endpoint) with an operator password."""
    return settings.model_copy(update={"operator_password": SecretStr(OPERATOR_PASSWORD)})


def as_operator(client: FlaskClient) -> FlaskClient:
    """The client, sending the operator's credentials with every request."""
    client.environ_base["HTTP_AUTHORIZATION"] = basic_auth("operator", OPERATOR_PASSWORD)
    return client


def web_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of one web test: its own data directory, no .env file, `overrides`."""
    return Settings(_env_file=None, data_dir=tmp_path / "data", **overrides)  # type: ignore[call-arg]


def fuzz_settings(tmp_path: Path) -> Settings:
    """Settings of a fuzz run: no password, no limits (the fuzz is after 5xx, not 429), and a
    closed local port as the endpoint, so any AWS call fails at once and nothing leaves
    127.0.0.1."""
    return web_settings(
        tmp_path,
        aws_endpoint_url="http://127.0.0.1:9",
        order_rate_limit="",
        max_orders_per_email_per_hour=1_000_000,
    )


@pytest.fixture
def app(operator_settings: Settings) -> Iterator[Flask]:
    """The web app on the test's settings, with an operator password."""
    app = create_app(operator_settings)
    yield app
    app.extensions["pubsub"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client of `app` that sends the operator's credentials (operator routes need them)."""
    return as_operator(app.test_client())
