"""Fixtures of the unit tier's web tests."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr

from pubsub_supervisor.settings import Settings

OPERATOR_PASSWORD = "unit-operator-password"


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
