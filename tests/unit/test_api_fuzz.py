"""Schema-driven fuzz of the JSON API (docs/openapi.yaml) against the real app, in-process.

schemathesis generates valid and invalid requests from the description; every response
must be a documented status with a JSON body of the documented shape, and none a 5xx.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.unit.conftest import fuzz_settings
from web import create_app

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"


@pytest.fixture
def fuzz_app(tmp_path: Path) -> Iterator[Flask]:
    # A closed local port: nothing in these routes calls AWS, and nothing may leave 127.0.0.1.
    # The limits would turn most generated orders into 429s: the fuzz is after 5xx.
    app = create_app(fuzz_settings(tmp_path))
    yield app
    app.extensions["pubsub"].close()


#: Examples per operation; CI raises it (FUZZ_EXAMPLES=1000) for thousands per route.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))


def _without_security(spec: dict[str, Any]) -> dict[str, Any]:
    """The description without its credentials: on an emulator with no OPERATOR_PASSWORD
    every route is open (tests/unit/test_web_access.py checks the password mode)."""
    for operations in spec["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    return spec


# /readyz probes AWS; the integration suite exercises it instead.
schema = schemathesis.openapi.from_dict(
    _without_security(yaml.safe_load(SPEC.read_text()))
).exclude(path="/readyz")


@pytest.mark.fuzz
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_and_never_fails(case: Any, fuzz_app: Flask) -> None:
    # Valid-looking bodies may still be refused (an unknown SKU, an address the email
    # validator rejects), so "valid data is accepted" is not checked; all else is.
    case.call_and_validate(app=fuzz_app, excluded_checks=[positive_data_acceptance])
