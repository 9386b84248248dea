"""Messages trusted no more than requests, on the real stack (LocalStack, supervisord, every
program): forged, replayed and oversized messages sent straight to the service queues
change no stock, no count and no order state; the forged ones land in their DLQ with
their reason, the replays are answered with the first outcome, and every page keeps
answering 200."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from pubsub_supervisor.clients import AwsClients, make_clients, queue_url
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.events import ServiceResult, encode, new_id
from pubsub_supervisor.idempotency import processed_events
from pubsub_supervisor.settings import Settings
from services.analytics.handler import read_summary
from services.inventory.handler import stock
from tests.support.emulators import Emulator
from tests.support.stack import Api, wait_for
from web.schema import outbox

pytestmark = pytest.mark.integration

PAGES = ("/", "/pipeline", "/api/analytics", "/api/pipeline", "/api/products")


@pytest.fixture(scope="module")
def clients(stack_settings: Settings) -> AwsClients:
    return make_clients(stack_settings)


def engine_of(settings: Settings, store: str) -> Engine:
    return make_engine(settings.database_url(store))


def levels(settings: Settings) -> dict[str, int]:
    engine = engine_of(settings, "inventory")
    try:
        with engine.connect() as conn:
            return {sku: n for sku, n in conn.execute(select(stock.c.sku, stock.c.available))}
    finally:
        engine.dispose()


def counted(settings: Settings) -> tuple[int, int]:
    engine = engine_of(settings, "analytics")
    try:
        summary = read_summary(engine)
    finally:
        engine.dispose()
    return summary["orders"], summary["units"]


def handled(settings: Settings, store: str, event_id: str) -> bool:
    """Whether a service recorded this event (it answered the replay)."""
    engine = engine_of(settings, store)
    try:
        with engine.connect() as conn:
            query = select(func.count()).where(processed_events.c.event_id == event_id)
            return bool(conn.execute(query.select_from(processed_events)).scalar_one())
    finally:
        engine.dispose()


def send(clients: AwsClients, queue: str, body: str) -> None:
    """Straight onto a queue, as a compromised principal (or a bug) would."""
    clients.sqs.send_message(QueueUrl=queue_url(clients, queue), MessageBody=body)


def dead_letter(clients: AwsClients, dlq: str, marker: str, timeout: float = 30) -> str:
    """The reason of the dead letter whose body holds `marker` (deleted once read)."""
    url = queue_url(clients, dlq)

    def found() -> str | None:
        got = clients.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=2,
            WaitTimeSeconds=1,
        )
        for message in got.get("Messages", []):
            if marker in message["Body"]:
                clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                reason: str = message["MessageAttributes"]["dead_letter_reason"]["StringValue"]
                return reason
        return None

    return wait_for(found, timeout, f"a dead letter holding {marker} in {dlq}", interval=0.5)


def drained(clients: AwsClients, queue: str) -> bool:
    attributes = clients.sqs.get_queue_attributes(
        QueueUrl=queue_url(clients, queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in attributes.values())


def pages_answer(api: Api, order_id: str) -> None:
    for path in (*PAGES, f"/orders/{order_id}", f"/api/orders/{order_id}"):
        answer = api.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])


def settled_order(api: Api) -> dict[str, Any]:
    buyer = f"trust-{uuid.uuid4().hex[:10]}@example.com"
    placed = api.post_order(buyer, [{"sku": "KB-001", "quantity": 1}])
    assert placed.status_code == 201, placed.text
    order = api.wait_settled(placed.json()["id"])
    assert order["status"] == "processed", order
    return {**order, "buyer": buyer}


def order_event(settings: Settings, order_id: str) -> dict[str, Any]:
    """The `order.created` the web published for the order."""
    engine = engine_of(settings, "web")
    try:
        with engine.connect() as conn:
            body = conn.execute(
                select(outbox.c.body).where(outbox.c.aggregate_id == order_id)
            ).scalar_one()
    finally:
        engine.dispose()
    event: dict[str, Any] = json.loads(body)
    return event


def test_a_forged_negative_quantity_adds_no_stock_and_is_dead_lettered_with_its_reason(
    api: Api, stack_settings: Settings, clients: AwsClients
) -> None:
    order = settled_order(api)
    topology = stack_settings.topology
    inventory = topology.queue_for("inventory")
    before = levels(stack_settings)
    forged = order_event(stack_settings, order["id"])
    marker = new_id()
    forged.update(event_id=marker, order_id=new_id())
    forged["items"][0]["quantity"] = -1000
    send(clients, inventory.name, json.dumps(forged))
    reason = dead_letter(clients, inventory.dlq_name, marker)
    assert reason.startswith("poison: invalid order.created: items.0.quantity: "), reason
    assert levels(stack_settings) == before
    pages_answer(api, order["id"])


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"customer_email": "\u0430da@example.com"}, "customer_email"),  # a Cyrillic a
        (
            {"items": [{"sku": "KB-001", "name": "x", "quantity": "9", "unit_price_cents": 1}]},
            "items.0.quantity",
        ),
        ({"order_id": "x" * 5000}, "order_id"),
    ],
)
def test_forged_and_oversized_order_events_are_poison_everywhere(
    api: Api,
    stack_settings: Settings,
    clients: AwsClients,
    change: dict[str, Any],
    where: str,
) -> None:
    order = settled_order(api)
    before = (levels(stack_settings), counted(stack_settings))
    for service in ("email", "inventory", "analytics"):
        spec = stack_settings.topology.queue_for(service)
        forged = order_event(stack_settings, order["id"])
        marker = new_id()
        forged.update(event_id=marker, **change)
        send(clients, spec.name, json.dumps(forged))
        reason = dead_letter(clients, spec.dlq_name, marker)
        assert reason.startswith(f"poison: invalid order.created: {where}: "), reason
    assert (levels(stack_settings), counted(stack_settings)) == before
    assert api.order(order["id"])["services"] == order["services"]
    pages_answer(api, order["id"])


def test_an_order_replayed_under_a_new_event_id_changes_nothing(
    api: Api, stack_settings: Settings, clients: AwsClients, emulator: Emulator
) -> None:
    order = settled_order(api)
    wait_for(lambda: len(emulator.sent_emails(order["buyer"])) == 1 or None, 30, "the email")
    before = (levels(stack_settings), counted(stack_settings))
    replay = order_event(stack_settings, order["id"])
    replay["event_id"] = new_id()
    for service in ("email", "inventory", "analytics"):
        send(clients, stack_settings.topology.queue_for(service).name, json.dumps(replay))
    for store in ("inventory", "analytics"):

        def answered(store: str = store) -> bool | None:
            return handled(stack_settings, store, replay["event_id"]) or None

        wait_for(answered, 30, f"{store} to answer the replay")
    email_queue = stack_settings.topology.queue_for("email").name
    wait_for(lambda: drained(clients, email_queue) or None, 30, "email to answer the replay")
    time.sleep(1)  # the results of the replay reach the web
    assert (levels(stack_settings), counted(stack_settings)) == before
    assert len(emulator.sent_emails(order["buyer"])) == 1
    assert api.order(order["id"])["services"] == order["services"]
    pages_answer(api, order["id"])


def test_forged_results_never_move_an_order_back_nor_break_a_page(
    api: Api, stack_settings: Settings, clients: AwsClients
) -> None:
    order = settled_order(api)
    web = stack_settings.topology.queue_for("web")
    products = api.get("/api/products").json()
    summary = api.get("/api/analytics").json()
    summary.pop("reported_at", None)
    # Backwards: no state moves (processed is final), and nothing is dead-lettered.
    for status in ("pending", "failed", "rejected"):
        backwards = ServiceResult(
            order_id=order["id"], service="inventory", status=status, reason="forged"
        )
        send(clients, web.name, encode(backwards))
    # Malformed or oversized data: poison, with its reason.
    hostile: list[tuple[str, dict[str, Any], str]] = [
        ("inventory", {"stock": {"KB-001": -1}}, "invalid inventory stock"),
        ("inventory", {"stock": {"NOT-ORDERED": 5}}, "SKUs not in the order"),
        ("inventory", {"stock": {"KB-001": "many"}}, "invalid inventory stock"),
        ("analytics", {"summary": {"orders": 1, "units_by_sku": ["x"]}}, "invalid analytics"),
        (
            "analytics",
            {"summary": dict(summary, units_by_sku={f"S{i}": 1 for i in range(5000)})},
            "invalid analytics summary",
        ),
    ]
    for service, data, why in hostile:
        forged = ServiceResult(order_id=order["id"], service=service, status="processed", data=data)
        send(clients, web.name, encode(forged))
        reason = dead_letter(clients, web.dlq_name, forged.event_id)
        assert reason.startswith("poison: "), reason
        assert why in reason, reason
    wait_for(lambda: drained(clients, web.name) or None, 30, "the web to take the results")
    assert api.order(order["id"])["services"] == order["services"]
    assert api.get("/api/products").json() == products
    pages_answer(api, order["id"])
