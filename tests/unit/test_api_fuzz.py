"""Schema-driven fuzz of the JSON API (docs/openapi.yaml) against the real app, in-process.

schemathesis generates valid and invalid requests from the description; every response
must be a documented status with a JSON body of the documented shape, and none a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from pubsub_supervisor.settings import Settings
from web import create_app

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"


@pytest.fixture
def fuzz_app(tmp_path: Path) -> Iterator[Flask]:
    # A closed local port: nothing in these routes calls AWS, and nothing may leave 127.0.0.1.
    config = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "data", aws_endpoint_url="http://127.0.0.1:9"
    )
    app = create_app(config)
    yield app
    app.extensions["pubsub"].close()


# /readyz probes AWS; the integration suite exercises it instead.
schema = schemathesis.openapi.from_path(SPEC).exclude(path="/readyz")


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_and_never_fails(case: Any, fuzz_app: Flask) -> None:
    # Valid-looking bodies may still be refused (an unknown SKU, an address the email
    # validator rejects), so "valid data is accepted" is not checked; all else is.
    case.call_and_validate(app=fuzz_app, excluded_checks=[positive_data_acceptance])
