"""Messages are trusted no more than requests: strict event models, one effect per order
whatever the event id, results that never move an order backwards, bounded result data,
pages that survive whatever is stored, and addresses SES takes. Real SQLite stores; moto
where SES is needed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from flask import Flask
from flask.testing import FlaskClient
from moto import mock_aws
from sqlalchemy import Engine, select, update

from pubsub_supervisor import db
from pubsub_supervisor.bounds import QUANTITY_CEILING, SUMMARY_SKUS, ses_address
from pubsub_supervisor.catalog import load_catalog
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.errors import PoisonMessage, RetryLater
from pubsub_supervisor.events import (
    OrderCreated,
    OrderItem,
    ServiceResult,
    decode,
    encode,
    new_id,
    utcnow,
)
from pubsub_supervisor.settings import Settings
from services.analytics.handler import AnalyticsService, read_summary
from services.email import sends
from services.email.handler import EmailService, permanent_refusal
from services.inventory.handler import InventoryService
from web import get_context, store
from web.schema import analytics_snapshot, order_services, product_stock
from web.validation import validate_order

SENDER = "orders@example.com"


def order(**changes: Any) -> OrderCreated:
    item = OrderItem(sku="KB-001", name="Keyboard", quantity=2, unit_price_cents=4999)
    fields: dict[str, Any] = {
        "order_id": new_id(),
        "customer_email": "ada@example.com",
        "items": (item,),
    }
    return OrderCreated(**(fields | changes))


def forged(changes: dict[str, Any], item: dict[str, Any] | None = None) -> str:
    """The JSON of a valid order event with fields replaced, as a forger would send it."""
    body = json.loads(encode(order()))
    body.update(changes)
    if item is not None:
        body["items"][0].update(item)
    return json.dumps(body)


# -- the event models ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({"quantity": -3}, "items.0.quantity"),
        ({"quantity": 0}, "items.0.quantity"),
        ({"quantity": QUANTITY_CEILING + 1}, "items.0.quantity"),
        ({"quantity": "2"}, "items.0.quantity"),  # no coercion from strings
        ({"quantity": 2.0}, "items.0.quantity"),  # nor from floats
        ({"quantity": True}, "items.0.quantity"),
        ({"sku": ""}, "items.0.sku"),
        ({"sku": "S" * 65}, "items.0.sku"),
        ({"name": "n" * 201}, "items.0.name"),
        ({"unit_price_cents": -1}, "items.0.unit_price_cents"),
        ({"extra": 1}, "items.0.extra"),
    ],
)
def test_an_order_line_out_of_bounds_is_poison(item: dict[str, Any], where: str) -> None:
    with pytest.raises(PoisonMessage, match=re.escape(f"invalid order.created: {where}: ")):
        decode(forged({}, item))


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"items": []}, "items"),
        ({"order_id": ""}, "order_id"),
        ({"order_id": "x" * 65}, "order_id"),
        ({"order_id": 7}, "order_id"),
        ({"event_id": "a b"}, "event_id"),
        ({"customer_email": "not-an-address"}, "customer_email"),
        ({"customer_email": "\u0430da@example.com"}, "customer_email"),  # a Cyrillic a
        ({"customer_email": "ada@exämple.com"}, "customer_email"),  # an IDN in Unicode
        ({"customer_email": "adä@example.com"}, "customer_email"),  # SMTPUTF8
        ({"schema_version": "1"}, None),
    ],
)
def test_an_order_event_out_of_bounds_is_poison(changes: dict[str, Any], where: str | None) -> None:
    with pytest.raises(PoisonMessage) as raised:
        decode(forged(changes))
    if where is not None:
        assert str(raised.value).startswith(f"invalid order.created: {where}: ")


def test_too_many_lines_are_poison() -> None:
    body = json.loads(encode(order()))
    body["items"] = [dict(body["items"][0], sku=f"S-{i}") for i in range(51)]
    with pytest.raises(PoisonMessage, match=re.escape("invalid order.created: items: ")):
        decode(json.dumps(body))


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"service": "shipping"}, "service"),
        ({"status": "done"}, "status"),
        ({"reason": "r" * 2001}, "reason"),
        ({"order_id": None}, "order_id"),
    ],
)
def test_a_result_out_of_bounds_is_poison(changes: dict[str, Any], where: str) -> None:
    body = json.loads(encode(ServiceResult(order_id="o-1", service="email", status="processed")))
    body.update(changes)
    with pytest.raises(PoisonMessage, match=re.escape(f"invalid order.service_result: {where}: ")):
        decode(json.dumps(body))


def test_a_punycode_domain_is_taken_in_its_ascii_form() -> None:
    assert ses_address("ada@xn--exmple-cua.com") == "ada@xn--exmple-cua.com"
    event = decode(forged({"customer_email": "ada@xn--exmple-cua.com"}))
    assert isinstance(event, OrderCreated)
    assert event.customer_email == "ada@xn--exmple-cua.com"


@pytest.mark.parametrize(
    "address",
    ["\u0430da@example.com", "ada@exämple.com", "adä@example.com", "ada@example.com\u200b"],
)
def test_the_web_refuses_addresses_ses_cannot_send_to(settings: Settings, address: str) -> None:
    catalog = load_catalog(settings.catalog_path)
    payload = {"customer_email": address, "items": [{"sku": "KB-001", "quantity": 1}]}
    accepted, errors = validate_order(payload, catalog)
    assert accepted is None
    assert [e["field"] for e in errors] == ["customer_email"]


# -- once per order -------------------------------------------------------------------------


@pytest.fixture
def inventory(settings: Settings, tmp_path: Path) -> Iterator[InventoryService]:
    service = InventoryService(
        make_engine(f"sqlite:///{tmp_path}/inventory.sqlite3"), load_catalog(settings.catalog_path)
    )
    yield service
    service.engine.dispose()


def test_inventory_reserves_once_per_order_whatever_the_event_id(
    inventory: InventoryService,
) -> None:
    before = inventory.levels()["KB-001"]
    first = order()
    replay = first.model_copy(update={"event_id": new_id()})
    assert inventory(first).status == "processed"
    again = inventory(replay)
    assert again.status == "processed"
    assert again.data == inventory(first).data  # the first outcome, both ways
    assert inventory.levels()["KB-001"] == before - 2


def test_a_negative_quantity_never_reaches_the_inventory(inventory: InventoryService) -> None:
    before = inventory.levels()
    with pytest.raises(PoisonMessage, match=re.escape("items.0.quantity")):
        decode(forged({}, {"quantity": -1000}))
    assert inventory.levels() == before


def test_analytics_counts_once_per_order_whatever_the_event_id(tmp_path: Path) -> None:
    service = AnalyticsService(make_engine(f"sqlite:///{tmp_path}/analytics.sqlite3"))
    first = order()
    service(first)
    service(first.model_copy(update={"event_id": new_id()}))
    summary = read_summary(service.engine)
    assert (summary["orders"], summary["units"]) == (1, 2)
    service.engine.dispose()


def test_the_analytics_summary_names_only_the_best_sellers_and_stays_small(
    tmp_path: Path,
) -> None:
    service = AnalyticsService(make_engine(f"sqlite:///{tmp_path}/analytics.sqlite3"))
    for batch in range(40):
        items = tuple(
            OrderItem(sku=f"SKU-{batch:02d}-{i:02d}", name="x", quantity=1 + i, unit_price_cents=1)
            for i in range(50)
        )
        service(order(items=items))
    outcome = service(order())
    summary = outcome.data["summary"]
    assert summary["skus"] == 40 * 50 + 1
    assert len(summary["units_by_sku"]) == SUMMARY_SKUS
    assert min(summary["units_by_sku"].values()) == 50  # the biggest lines won
    result = ServiceResult(
        order_id="o-1", service="analytics", status="processed", data=outcome.data
    )
    assert len(encode(result)) < 8 * 1024  # far under SNS's 256 KiB
    service.engine.dispose()


# -- the email service: one per order, permanent refusals --------------------------------


@pytest.fixture
def ses(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("ses", region_name="us-east-1")
        client.verify_email_identity(EmailAddress=SENDER)
        yield client


@pytest.fixture
def email_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/email.sqlite3")
    yield engine
    engine.dispose()


def email_service(engine: Engine, ses: Any) -> EmailService:
    return EmailService(engine, ses, SENDER, lease_seconds=30)


def sent(ses: Any) -> int:
    return int(ses.get_send_quota()["SentLast24Hours"])


def test_one_confirmation_per_order_whatever_the_event_id(email_engine: Engine, ses: Any) -> None:
    svc = email_service(email_engine, ses)
    first = order()
    outcome = svc(first)
    again = svc(first.model_copy(update={"event_id": new_id()}))
    assert again == outcome
    assert sent(ses) == 1


def test_a_replay_while_the_first_send_is_unsettled_waits_and_sends_nothing(
    email_engine: Engine, ses: Any
) -> None:
    svc = email_service(email_engine, ses)
    first = order()
    sends.begin(svc.engine, first.event_id, first.order_id, lease_seconds=30, confirm_seconds=60)
    with pytest.raises(RetryLater, match="another event id"):
        svc(first.model_copy(update={"event_id": new_id()}))
    assert sent(ses) == 0


class Refusing:
    """An SES client that answers every SendEmail with one client error."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        response: Any = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        self.error = ClientError(response, "SendEmail")
        self.calls = 0

    def send_email(self, **_kwargs: Any) -> Any:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("MessageRejected", "Email address is not verified: ada@example.com"),
        ("InvalidParameterValue", "Local address contains control or whitespace"),
        ("MessageRejected", "Illegal address"),
    ],
)
def test_a_permanent_refusal_ends_the_order_as_rejected_with_the_reason(
    email_engine: Engine, code: str, message: str
) -> None:
    client = Refusing(code, message)
    svc = email_service(email_engine, client)
    event = order()
    outcome = svc(event)
    assert outcome.status == "rejected"
    assert outcome.reason == f"SES refused the confirmation: {code}: {message}"
    record = sends.get(svc.engine, event.event_id)
    assert record is not None
    assert (record.status, record.reason) == (sends.REJECTED, outcome.reason)
    # A redelivery answers the same without calling SES again.
    assert svc(event) == outcome
    assert client.calls == 1


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        ("Throttling", "Maximum sending rate exceeded.", 400),
        ("ServiceUnavailable", "try again", 503),
        ("MessageRejected", f"Email address is not verified: {SENDER}", 400),
        ("MailFromDomainNotVerified", "the MAIL FROM domain is not verified", 400),
        ("AccessDenied", "not authorized to perform ses:SendEmail", 403),
    ],
)
def test_throttling_5xx_and_refusals_of_the_sender_stay_retried(
    email_engine: Engine, code: str, message: str, status: int
) -> None:
    client = Refusing(code, message, status)
    assert permanent_refusal(client.error, SENDER) is None
    svc = email_service(email_engine, client)
    event = order()
    with pytest.raises(ClientError):
        svc(event)
    record = sends.get(svc.engine, event.event_id)
    assert record is not None
    assert record.status in (sends.REFUSED, sends.ATTEMPTED)


# -- the web: results never move backwards, data bounded, pages survive the store -------


@pytest.fixture
def engine(app: Flask) -> Engine:
    with app.app_context():
        return get_context().engine


def place(client: FlaskClient) -> str:
    answer = client.post(
        "/api/orders",
        json={"customer_email": "ada@example.com", "items": [{"sku": "KB-001", "quantity": 1}]},
    )
    assert answer.status_code == 201, answer.text
    order_id: str = answer.json["id"]  # type: ignore[index]
    return order_id


def result(order_id: str, service: str, status: Any, **fields: Any) -> ServiceResult:
    return ServiceResult(order_id=order_id, service=service, status=status, **fields)


def status_of(engine: Engine, order_id: str, service: str) -> tuple[str, str | None]:
    found = store.get_order(engine, order_id)
    assert found is not None
    step = found["services"][service]
    return step["status"], step["reason"]


@pytest.mark.parametrize("final", ["processed", "rejected"])
def test_a_final_state_never_moves(client: FlaskClient, engine: Engine, final: str) -> None:
    order_id = place(client)
    store.apply_result(engine, result(order_id, "email", final, reason="first"))
    for later in ("pending", "failed", "processed", "rejected"):
        store.apply_result(engine, result(order_id, "email", later, reason="later"))
    assert status_of(engine, order_id, "email") == (final, "first")


def test_pending_changes_nothing_and_failed_gives_way_to_a_redrive(
    client: FlaskClient, engine: Engine
) -> None:
    order_id = place(client)
    store.apply_result(engine, result(order_id, "email", "failed", reason="dead-lettered"))
    store.apply_result(engine, result(order_id, "email", "pending"))
    assert status_of(engine, order_id, "email") == ("failed", "dead-lettered")
    store.apply_result(engine, result(order_id, "email", "processed"))
    assert status_of(engine, order_id, "email") == ("processed", None)


@pytest.mark.parametrize(
    "stock",
    [
        {"KB-001": -5},
        {"KB-001": "12"},
        {"KB-001": 1.5},
        {"NOT-IN-THE-ORDER": 3},
        [1, 2],
        {f"S-{i}": 1 for i in range(51)},
    ],
)
def test_a_malformed_stock_report_is_poison_and_changes_nothing(
    client: FlaskClient, engine: Engine, stock: Any
) -> None:
    order_id = place(client)
    with pytest.raises(PoisonMessage, match="invalid inventory stock"):
        store.apply_result(
            engine, result(order_id, "inventory", "processed", data={"stock": stock})
        )
    assert status_of(engine, order_id, "inventory") == ("pending", None)
    with db.read(engine) as conn:
        assert conn.execute(select(product_stock)).all() == []


@pytest.mark.parametrize(
    "summary",
    [
        {"orders": "many"},
        {"orders": 1, "revenue_cents": 1, "units": 1, "average_order_cents": 1},
        {
            "orders": 1,
            "revenue_cents": 1,
            "units": 1,
            "average_order_cents": 1,
            "units_by_sku": {f"S-{i}": 1 for i in range(SUMMARY_SKUS + 1)},
            "orders_per_minute": [],
        },
        "a string",
    ],
)
def test_a_malformed_summary_is_poison(client: FlaskClient, engine: Engine, summary: Any) -> None:
    order_id = place(client)
    with pytest.raises(PoisonMessage, match="invalid analytics summary"):
        store.apply_result(
            engine, result(order_id, "analytics", "processed", data={"summary": summary})
        )
    assert store.analytics(engine) is None


@pytest.mark.parametrize(
    "snapshot", ["not json", "[1]", '{"orders": "x"}', '{"units_by_sku": [1], "orders": 1}']
)
def test_no_stored_value_makes_a_page_fail(
    client: FlaskClient, engine: Engine, snapshot: str
) -> None:
    order_id = place(client)
    with db.write(engine) as conn:
        conn.execute(
            analytics_snapshot.insert().values(id=1, orders=1, data=snapshot, updated_at=utcnow())
        )
        conn.execute(product_stock.insert().values(sku="KB-001", stock="lots"))
        conn.execute(product_stock.insert().values(sku="MS-002", stock=-40))
        conn.execute(
            update(order_services)
            .where(order_services.c.order_id == order_id)
            .values(status="<script>", reason="\x00" + "é" * 10_000)
        )
    for path in ("/", "/pipeline", "/api/analytics", "/api/pipeline", f"/orders/{order_id}"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
    listed: Any = client.get("/api/products").json
    products = {p["sku"]: p["stock"] for p in listed["products"]}
    assert isinstance(products["KB-001"], int)
    assert products["MS-002"] >= 0
