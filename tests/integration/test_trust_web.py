"""The web's trust boundaries over real HTTP: gunicorn, a real emulator, real SQLite.

A second web (gunicorn alone, on the session emulator, with its own store: it publishes
nothing, so the session stack's queues stay undisturbed) runs with OPERATOR_PASSWORD and
tight limits; the session stack (supervisord, every program, no password on an emulator)
shows the open mode and takes the same hostile requests.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.emulators import Emulator
from tests.support.fixtures import stack_environment
from tests.support.stack import ROOT, VENV, SupervisedStack, wait_for
from tests.support.web_routes import OPERATOR_REQUESTS

pytestmark = pytest.mark.integration

PASSWORD = "integration-operator-password"
OPERATOR = ("operator", PASSWORD)
RATE = 6


def email() -> str:
    return f"trust-{uuid.uuid4().hex[:12]}@example.com"


def order(address: str) -> dict[str, object]:
    return {"customer_email": address, "items": [{"sku": "CB-005", "quantity": 1}]}


@pytest.fixture(scope="module")
def guarded(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a gunicorn web with OPERATOR_PASSWORD and tight order limits."""
    state = tmp_path_factory.mktemp("guarded-web")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PUBSUB_"))},
        "ENV_FILE": "",
        **stack_environment(
            emulator.endpoint_url,
            state / "data",
            OPERATOR_PASSWORD=PASSWORD,
            ORDER_RATE_LIMIT=f"{RATE}/minute",
            MAX_ORDERS_PER_EMAIL_PER_HOUR="2",
            PROGRAM_NAME="web",
        ),
    }
    base_url = f"http://127.0.0.1:{env['WEB_PORT']}"
    log = (state / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            str(VENV / "bin" / "gunicorn"),
            "--config",
            "python:web.gunicorn_conf",
            "web:create_app()",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            log.flush()
            raise AssertionError(f"gunicorn exited: {Path(log.name).read_text(errors='replace')}")
        try:
            return requests.get(f"{base_url}/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(ready, 60, f"{base_url}/readyz to answer 200")
        yield base_url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


@pytest.mark.parametrize(("method", "path"), OPERATOR_REQUESTS)
def test_operator_routes_need_credentials(guarded: str, method: str, path: str) -> None:
    url = f"{guarded}{path}"
    anonymous = requests.request(method, url, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="pubsub operator"'
    wrong = requests.request(method, url, auth=("operator", "guess"), timeout=10)
    assert wrong.status_code == 401
    if method == "GET":
        assert requests.get(url, auth=OPERATOR, timeout=10).status_code == 200


def test_public_routes_answer_anonymously(guarded: str) -> None:
    created = requests.post(f"{guarded}/api/orders", json=order(email()), timeout=10)
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    order_id = created.json()["id"]
    one = requests.get(f"{guarded}/api/orders/{order_id}", timeout=10)
    assert one.status_code == 200
    assert one.headers["Cache-Control"] == "no-store"
    assert requests.get(f"{guarded}/orders/{order_id}", timeout=10).status_code == 200
    assert requests.get(f"{guarded}/api/products", timeout=10).status_code == 200
    assert requests.get(f"{guarded}/", timeout=10).status_code == 200
    assert requests.get(f"{guarded}/healthz", timeout=10).json() == {"status": "ok"}
    # Readiness: the status for anyone, the checks for operators.
    assert requests.get(f"{guarded}/readyz", timeout=10).json() == {"status": "ready"}
    detail = requests.get(f"{guarded}/readyz", auth=OPERATOR, timeout=10).json()
    assert detail["checks"] == {"database": "ok", "sns": "ok", "sqs": "ok"}


def test_orders_past_the_limits_answer_429(guarded: str) -> None:
    http = requests.Session()
    repeated = email()
    codes = [http.post(f"{guarded}/api/orders", json=order(repeated), timeout=10) for _ in range(3)]
    assert [r.status_code for r in codes[:2]] == [201, 201]
    # The third confirmation for one address within the hour is refused.
    assert codes[2].status_code == 429
    assert "in the last hour" in codes[2].json()["error"]
    # The address limit counts every order this client placed in the minute (this test's
    # and the others'): within RATE more, one answers 429 and says when to come back.
    for _ in range(RATE + 1):
        response = http.post(f"{guarded}/api/orders", json=order(email()), timeout=10)
        if response.status_code == 429 and "Retry-After" in response.headers:
            break
        assert response.status_code == 201
    else:
        pytest.fail(f"no 429 after {RATE + 1} more orders within a minute")
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert "Too many orders" in response.json()["error"]


def hostile_requests(base_url: str) -> Iterator[tuple[str, requests.Response]]:
    """A handful of requests no client should send, each with what it is."""
    http = requests.Session()
    nested = "[" * 50_000 + "]" * 50_000
    for body, what in (
        (nested[:60_000], "JSON nested past the parser's depth"),
        ('{"customer_email": ' + "[" * 30_000 + "]" * 30_000 + "}", "nested field"),
        (
            '{"customer_email": "a@example.com", "items": [{"sku": "KB-001", "quantity": '
            + "9" * 5000
            + "}]}",
            "a 5000-digit quantity",
        ),
        ("\xff\xfe not json", "bytes that are not UTF-8"),
    ):
        yield (
            what,
            http.post(
                f"{base_url}/api/orders",
                data=body.encode("latin-1"),
                headers={"Content-Type": "application/json"},
                timeout=10,
            ),
        )
    for path in (
        f"/orders?before={2**70}",
        f"/api/orders?before={2**64}&limit=²",
        "/orders?before=%00",
        "/orders/" + "x" * 4000,
        "/api/orders/%00%ff",
        "/%2e%2e/%2e%2e/etc/passwd",
    ):
        yield path, http.get(f"{base_url}{path}", auth=OPERATOR, timeout=10)
    for method in ("BREW", "PROPFIND", "TRACE", "DELETE"):
        yield method, http.request(method, f"{base_url}/api/orders", timeout=10)
    yield (
        "odd headers",
        http.get(
            f"{base_url}/",
            headers={
                "traceparent": "x" * 3000,
                "Authorization": "Basic %%%",
                "X-Forwarded-For": "?",
            },
            timeout=10,
        ),
    )
    form = http.get(f"{base_url}/", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    for quantity in ("²", "٣", "1_000", "9" * 400, "-0"):
        yield (
            f"form quantity {quantity[:12]!r}",
            http.post(
                f"{base_url}/orders",
                data={
                    "csrf_token": token.group(1),
                    "customer_email": email(),
                    "qty-KB-001": quantity,
                },
                timeout=10,
            ),
        )


@pytest.mark.parametrize("which", ["guarded", "open"])
def test_hostile_requests_never_answer_5xx(which: str, request: pytest.FixtureRequest) -> None:
    if which == "guarded":
        base_url: str = request.getfixturevalue("guarded")
    else:
        base_url = request.getfixturevalue("stack").base_url
    failures = [
        (what, r.status_code) for what, r in hostile_requests(base_url) if r.status_code >= 500
    ]
    assert not failures


def test_metrics_labels_stay_bounded(guarded: str) -> None:
    for method in ("BREW", "XYZZY", "M" * 40):
        requests.request(method, f"{guarded}/nowhere/{uuid.uuid4().hex}", timeout=10)
    scrape = requests.get(f"{guarded}/metrics", auth=OPERATOR, timeout=10).text
    methods = set(re.findall(r'pubsub_http_requests_total\{[^}]*method="([^"]+)"', scrape))
    assert methods <= {"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}
    assert "other" in methods
    assert "/nowhere" not in scrape


def test_open_mode_on_the_emulator_keeps_operator_routes_open(stack: SupervisedStack) -> None:
    for method, path in OPERATOR_REQUESTS:
        if method == "GET":
            response = requests.get(f"{stack.base_url}{path}", timeout=30)
            assert response.status_code == 200, path
