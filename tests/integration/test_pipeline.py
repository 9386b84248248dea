"""The whole pipeline on a real emulator and a real supervisord tree, on each store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from sqlalchemy import create_engine, select

from pubsub_supervisor.clients import make_clients
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.events import OrderCreated, decode
from pubsub_supervisor.settings import Settings
from services.email.handler import EmailService
from services.email.sends import email_sends
from tests.support.emulators import Emulator
from tests.support.stack import ROOT, Api, SupervisedStack, wait_for
from web.schema import outbox

pytestmark = [
    pytest.mark.integration,
    # Every test runs against a stack on SQLite files, then one on PostgreSQL; the SQLite
    # run is the session stack, so it is in the quick tier.
    pytest.mark.parametrize(
        "store_kind",
        [pytest.param("sqlite", marks=pytest.mark.quick), "postgres"],
        indirect=True,
        scope="session",
    ),
]


def email() -> str:
    return f"buyer-{uuid.uuid4().hex[:12]}@example.com"


def stack_visibility_timeout() -> int:
    return Settings(_env_file=None).queue_visibility_timeout  # type: ignore[call-arg]


def analytics_orders(api: Api) -> int:
    return int(api.get("/api/analytics").json()["orders"])


def test_ready_and_healthy(api: Api) -> None:
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "sns": "ok", "sqs": "ok"}
    assert api.get("/healthz").json() == {"status": "ok"}


def test_order_reaches_every_service(api: Api, emulator: Emulator) -> None:
    buyer = email()
    before = {p["sku"]: p["stock"] for p in api.get("/api/products").json()["products"]}
    response = api.post_order(
        buyer, [{"sku": "MS-002", "quantity": 3}, {"sku": "CB-005", "quantity": 1}]
    )
    assert response.status_code == 201
    order = api.wait_settled(response.json()["id"])
    assert order["status"] == "processed"
    assert {name: s["status"] for name, s in order["services"].items()} == {
        "email": "processed",
        "inventory": "processed",
        "analytics": "processed",
    }
    assert order["published"] is True
    # The confirmation really went through SES, once, with the order in it.
    mails = emulator.sent_emails(buyer)
    assert len(mails) == 1
    assert order["id"] in mails[0].content
    assert "<table>" in (mails[0].html or "")
    # Inventory's reservation shows in the web's products (reported back as events).
    after = {p["sku"]: p["stock"] for p in api.get("/api/products").json()["products"]}
    assert after["MS-002"] <= before["MS-002"] - 3
    summary = api.get("/api/analytics").json()
    assert summary["orders"] >= 1
    assert summary["units_by_sku"]["MS-002"] >= 3


def test_short_stock_is_rejected_but_still_confirmed_and_counted(
    api: Api, emulator: Emulator
) -> None:
    buyer = email()
    response = api.post_order(buyer, [{"sku": "LE-007", "quantity": 500}])
    assert response.status_code == 201
    order = api.wait_settled(response.json()["id"])
    inventory = order["services"]["inventory"]
    assert inventory["status"] == "rejected"
    assert "insufficient stock for LE-007" in inventory["reason"]
    assert order["status"] == "rejected"
    # Fan-out: email confirms receipt and analytics counts demand, whatever inventory says.
    assert order["services"]["email"]["status"] == "processed"
    assert order["services"]["analytics"]["status"] == "processed"
    assert len(emulator.sent_emails(buyer)) == 1


BAD_REQUESTS: list[tuple[dict[str, Any], int]] = [
    ({"data": "{broken", "headers": {"Content-Type": "application/json"}}, 400),
    ({"data": "hello", "headers": {"Content-Type": "text/plain"}}, 400),
    ({"json": {"customer_email": "nope", "items": [{"sku": "KB-001", "quantity": 1}]}}, 422),
    ({"json": {"customer_email": "a@example.com", "items": []}}, 422),
    ({"json": {"customer_email": "a@example.com", "items": [{"sku": "ZZ", "quantity": 1}]}}, 422),
    (
        {"json": {"customer_email": "a@example.com", "items": [{"sku": "KB-001", "quantity": 0}]}},
        422,
    ),
    (
        {
            "json": {
                "customer_email": "a@example.com",
                "items": [{"sku": "KB-001", "quantity": 5000}],
            }
        },
        422,
    ),
    (
        {
            "json": {
                "customer_email": "a@example.com",
                "items": [{"sku": "KB-001", "quantity": 1}],
                "x": 1,
            }
        },
        422,
    ),
    # The server answers 413 without reading the body and closes the connection; a
    # client reusing it would race that close, so this request asks for its own.
    (
        {
            "data": "x" * 200_000,
            "headers": {"Content-Type": "application/json", "Connection": "close"},
        },
        413,
    ),
]


def test_bad_requests_get_4xx_and_publish_nothing(api: Api) -> None:
    listed_before = len(api.get("/api/orders?limit=100").json()["orders"])
    counted_before = analytics_orders(api)
    for kwargs, status in BAD_REQUESTS:
        response = api.post("/api/orders", **kwargs)
        assert response.status_code == status, (kwargs, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
    # A good order after the bad ones: once it is counted, anything the bad ones had
    # published would have been counted too (the relay publishes in order).
    good = api.post_order(email(), [{"sku": "KB-001", "quantity": 1}])
    api.wait_settled(good.json()["id"])
    assert analytics_orders(api) == counted_before + 1
    assert len(api.get("/api/orders?limit=100").json()["orders"]) == min(listed_before + 1, 100)


def run_pubsub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `pubsub` command with the stack's environment."""
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pubsub"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def without_changes_of_kinds(stdout: str, kinds: frozenset[str]) -> str:
    """`pubsub provision` output without the changes of these kinds (and their details)."""
    kept: list[str] = []
    skipping = False
    for line in stdout.splitlines():
        if line.startswith("    "):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(" ", 1)[0] in CHANGE_VERBS and any(
            f" {kind} " in f" {line} " for kind in kinds
        )
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def reported_changes(stdout: str) -> tuple[list[str], set[str]]:
    """The change lines `pubsub provision` printed, and the attribute names under them."""
    changes = [line for line in stdout.splitlines() if line.split(" ", 1)[0] in CHANGE_VERBS]
    attributes = {
        line.strip().split(":", 1)[0] for line in stdout.splitlines() if line.startswith("    ")
    }
    return changes, attributes


CHANGE_VERBS = {"create", "update", "would"}


def test_provisioning_again_changes_nothing(stack_env: dict[str, str], emulator: Emulator) -> None:
    env = {**os.environ, **stack_env, "ENV_FILE": ""}
    # The recorder is for the stack's programs; provisioning runs with other credentials.
    env.pop("PUBSUB_TEST_AWS_CALL_LOG", None)
    for args in (("provision",), ("provision", "--dry-run")):
        result = run_pubsub(env, *args)
        assert result.returncode == 0, result.stderr
        # What the emulator cannot create, a dry run lists every time.
        stdout = without_changes_of_kinds(result.stdout, emulator.unsupported)
        if not emulator.dropped_attributes:
            assert "Nothing to change" in stdout or stdout.strip().endswith("would change."), (
                result.stdout
            )
            assert not reported_changes(stdout)[0], result.stdout
            continue
        # An emulator that drops an attribute shows it as drift on every run, and only it.
        changes, attributes = reported_changes(stdout)
        assert all(" update queue " in f" {line} " for line in changes), result.stdout
        assert attributes <= emulator.dropped_attributes, result.stdout
    # What the emulator holds passes every rule real AWS enforces.
    check = run_pubsub(env, "provision", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No problems" in check.stdout


def test_emulator_resources_match_the_topology(stack_settings: Settings) -> None:
    clients = make_clients(stack_settings)
    for spec in stack_settings.topology.queues:
        url = clients.sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
        assert url.startswith(stack_settings.aws_endpoint_url or "")
        attrs = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert spec.dlq_name in attrs["RedrivePolicy"]
    identities = clients.ses.list_identities(IdentityType="EmailAddress")["Identities"]
    assert stack_settings.email_sender in identities


def test_supervisord_restarts_a_program_that_dies(stack: SupervisedStack, api: Api) -> None:
    state, pid = stack.status()["inventory_service"]
    assert state == "RUNNING"
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        new_state, new_pid = stack.status()["inventory_service"]
        return new_state == "RUNNING" and new_pid not in (None, pid)

    wait_for(restarted, 30, "supervisord to restart inventory_service")
    order = api.post_order(email(), [{"sku": "HD-004", "quantity": 1}])
    # The killed process may have left a long poll open on the emulator, which can still
    # take the next message: that message comes back when its visibility timeout ends.
    settled = api.wait_settled(order.json()["id"], timeout=stack_visibility_timeout() + 30)
    assert settled["services"]["inventory"]["status"] == "processed"


def log_records(stack: SupervisedStack, program: str) -> list[dict[str, Any]]:
    """A program's log, every line parsed as the JSON it must be."""
    records = []
    for number, line in enumerate(stack.log_text(program).splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{program}.log line {number} is not JSON: {line!r}") from None
    return records


def test_one_trace_id_follows_the_order_everywhere(stack: SupervisedStack, api: Api) -> None:
    response = api.post_order(email(), [{"sku": "LT-006", "quantity": 1}])
    trace_id = response.headers["X-Trace-Id"]
    order_id = response.json()["id"]
    # A long poll left open by a consumer killed in an earlier test may still take this
    # message (moto keeps such polls open for their full wait); it returns after the
    # visibility timeout.
    api.wait_settled(order_id, timeout=stack_visibility_timeout() + 30)
    programs = ("web", "web_worker", "email_service", "inventory_service", "analytics_service")

    def traced(program: str) -> list[dict[str, Any]]:
        return [r for r in log_records(stack, program) if r.get("trace_id") == trace_id]

    def logged_everywhere() -> bool:
        return all(any(r.get("order_id") == order_id for r in traced(p)) for p in programs)

    wait_for(logged_everywhere, 10, f"trace {trace_id} with order {order_id} in every log")
    for program in programs:
        lines = traced(program)
        assert all(r["program"] == program for r in lines), program
        assert any(r.get("event_id") for r in lines if r.get("order_id") == order_id), program
    # The event leaves from the web right after its commit (or from the web_worker's relay,
    # whichever claimed it first); the web_worker logs each result coming back.
    published = [r for p in ("web", "web_worker") for r in traced(p)]
    assert [r for r in published if r["message"] == "event published"]
    messages = [r["message"] for r in traced("web_worker")]
    assert messages.count("order status updated") >= 3


def test_every_log_line_is_json(stack: SupervisedStack) -> None:
    for program in ("web", "web_worker", "email_service", "inventory_service", "analytics_service"):
        records = log_records(stack, program)
        assert records, program
        assert {r["program"] for r in records} == {program}


def test_ses_reports_each_confirmation_back_to_the_email_service(
    api: Api, emulator: Emulator, stack_settings: Settings
) -> None:
    """The configuration set's Send event comes back through SNS and the email-sends queue
    to the email program, which records it: what settles a send whose answer was lost
    (tests/unit/test_email_sends.py, and the email kill test in tests/faults/)."""
    if emulator.kind in ("moto", "ministack"):
        pytest.skip(f"{emulator.kind} publishes no SES send events (docs/emulator-parity.md)")
    buyer = email()
    order_id = api.post_order(buyer, [{"sku": "KB-001", "quantity": 1}]).json()["id"]
    api.wait_settled(order_id)
    engine = create_engine(stack_settings.database_url("email"))

    def confirmation() -> Any:
        with engine.connect() as conn:
            return conn.execute(
                select(email_sends).where(
                    email_sends.c.order_id == order_id, email_sends.c.confirmed_at.is_not(None)
                )
            ).first()

    try:
        row = wait_for(confirmation, 20, "SES's Send event to reach the email service")
    finally:
        engine.dispose()
    assert row.attempts == 1
    assert row.ses_message_id


class AnswerLost:
    """SES as the email service saw it just before it was killed: the mail went out, the
    answer never came back."""

    def __init__(self, ses: Any) -> None:
        self.ses = ses

    def send_email(self, **kwargs: Any) -> Any:
        self.ses.send_email(**kwargs)
        raise ReadTimeoutError(endpoint_url="(killed before the answer)")


def test_a_send_whose_answer_was_lost_is_settled_by_its_send_event(
    stack: SupervisedStack, api: Api, emulator: Emulator, stack_settings: Settings
) -> None:
    """The email kill in the fault suite, made deterministic: SES took the mail, the
    process died before recording it. The restarted service must find SES's Send event
    and not send the confirmation again."""
    if emulator.kind in ("moto", "ministack"):
        pytest.skip(f"{emulator.kind} publishes no SES send events (docs/emulator-parity.md)")
    buyer = email()
    stack.ctl("stop", "email_service")
    try:
        order_id = api.post_order(buyer, [{"sku": "KB-001", "quantity": 1}]).json()["id"]
        web = create_engine(stack_settings.database_url("web"))
        with web.connect() as conn:
            body = conn.execute(
                select(outbox.c.body).where(outbox.c.aggregate_id == order_id)
            ).scalar_one()
        web.dispose()
        event = decode(body)
        assert isinstance(event, OrderCreated)
        # The process that is about to die: it claims the event, records its attempt,
        # SES sends the mail, and the answer is lost.
        engine = make_engine(stack_settings.database_url("email"))
        dying = EmailService(
            engine,
            AnswerLost(make_clients(stack_settings).ses),  # type: ignore[arg-type]
            stack_settings.email_sender,
            lease_seconds=1,
            configuration_set=stack_settings.topology.configuration_set,
        )
        with pytest.raises(ReadTimeoutError):
            dying(event)
        engine.dispose()
        assert len(emulator.sent_emails(buyer)) == 1
    finally:
        stack.ctl("start", "email_service")

    # The restarted program receives the order's event and SES's Send event together.
    order = api.wait_settled(order_id, timeout=60)
    assert order["services"]["email"]["status"] == "processed"
    assert len(emulator.sent_emails(buyer)) == 1
    settled = [
        r
        for r in log_records(stack, "email_service")
        if r.get("message") == "an earlier send went out; not sending again"
        and r.get("order_id") == order_id
    ]
    assert len(settled) == 1
