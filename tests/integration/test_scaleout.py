"""Scale-out: two complete stacks share one emulator and one PostgreSQL database.

Orders go in through both webs; midway one stack's consumers are killed; the other stack
takes over its messages, its outbox rows and its claims. In the end every order is
processed, and every effect happened exactly once: one email, one reservation, one count.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, func, select

from pubsub_supervisor import db
from pubsub_supervisor.catalog import load_catalog
from pubsub_supervisor.clients import make_clients
from pubsub_supervisor.idempotency import processed_events
from pubsub_supervisor.settings import STORE_NAMES, Settings
from services.analytics.handler import read_summary
from services.email.sends import SENT, email_sends
from services.inventory.handler import stock
from tests.support.emulators import Emulator
from tests.support.fixtures import settings_for, stack_environment
from tests.support.postgres import fresh_database
from tests.support.stack import Api, SupervisedStack, provision, wait_for
from web.schema import order_services, outbox

pytestmark = pytest.mark.integration

ORDERS = 300
#: Short leases so that the killed stack's messages, claims and rows come back quickly.
LEASE_SECONDS = 10
#: Consumers whose effects commit with their idempotency record: safe to kill -9 anywhere.
TRANSACTIONAL = ("inventory_service", "analytics_service", "web_worker")


@dataclass
class Placed:
    """What the test sent, to check every effect against."""

    emails: dict[str, str] = field(default_factory=dict)  # order id -> recipient
    units: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def shared_env(emulator: Emulator, postgres_server: str) -> Iterator[dict[str, str]]:
    """Settings both stacks share: the emulator, one database, their own queues."""
    if emulator.kind != "native":
        pytest.skip("the scale-out test runs in the native tier")
    with fresh_database(postgres_server, prefix="pubsub_scale") as url:
        env = {
            "AWS_ENDPOINT_URL": emulator.endpoint_url,
            "RESOURCE_PREFIX": f"scale-{uuid.uuid4().hex[:6]}",
            "DATABASE_URL": url,
            "QUEUE_VISIBILITY_TIMEOUT": str(LEASE_SECONDS),
            "OUTBOX_CLAIM_SECONDS": str(LEASE_SECONDS),
        }
        provision(env)
        yield env


@pytest.fixture
def stacks(
    shared_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[SupervisedStack]]:
    """Two supervisord trees with their own web ports and data dirs, started together."""
    stacks = [
        SupervisedStack(
            tmp_path_factory.mktemp(f"scale-stack-{i}"),
            stack_environment(
                shared_env["AWS_ENDPOINT_URL"],
                tmp_path_factory.mktemp(f"scale-data-{i}"),
                **shared_env,
            ),
        )
        for i in range(2)
    ]
    # Started at the same moment: both run the migrations of every store at once.
    with ThreadPoolExecutor(2) as pool:
        started = [pool.submit(stack.start, 120) for stack in stacks]
        try:
            for future in started:
                future.result()
        except BaseException:
            for stack in stacks:
                stack.stop()
            raise
    yield stacks
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(SupervisedStack.stop, stacks))


def handled(stack: SupervisedStack, program: str) -> int:
    """Orders a stack's service has logged as handled."""
    return stack.log_text(program).count('"order handled"')


def post_orders(apis: list[Api], placed: Placed, count: int, seed: int) -> None:
    """Post `count` orders, alternating between the webs, from a few client threads."""
    catalog = load_catalog(Path(Settings(_env_file=None).catalog_path))  # type: ignore[call-arg]
    # Skip the tiny-stock print: every order here must be reservable.
    skus = sorted(sku for sku, product in catalog.items() if product.stock >= 200)
    rng = random.Random(seed)
    orders = []
    for i in range(count):
        lines = rng.sample(skus, rng.randint(1, 2))
        orders.append(
            (
                apis[i % len(apis)],
                f"scale-{uuid.uuid4().hex[:12]}@example.com",
                [{"sku": sku, "quantity": rng.randint(1, 2)} for sku in lines],
            )
        )

    def post(order: tuple[Api, str, list[dict[str, Any]]]) -> None:
        api, email, items = order
        response = api.post_order(email, items)
        assert response.status_code == 201, response.text
        with placed.lock:
            placed.emails[response.json()["id"]] = email
            for item in items:
                placed.units[item["sku"]] += item["quantity"]

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(post, orders))


def kill_consumers(stack: SupervisedStack) -> None:
    """SIGKILL the transactional consumers mid-work; stop the email consumer by SIGTERM.

    An email is an effect outside the store: if its sender died between SES accepting a
    message and the record committing, only SES's Send event would settle it, after the
    attempt's lease (see services/email/sends.py; tests/faults kills the email service).
    Everything else commits with its record, so a kill at any instant leaves no trace.
    """
    status = stack.status()
    for program in TRANSACTIONAL:
        assert status[program][0] == "RUNNING", program
        assert "signalled" in stack.ctl("signal", "KILL", program), program
    stack.ctl("stop", "email_service", *TRANSACTIONAL)

    def all_down() -> bool:
        states = stack.status()
        return all(states[p][0] in ("STOPPED", "EXITED") for p in ("email_service", *TRANSACTIONAL))

    wait_for(all_down, 60, "the killed stack's consumers to stay down")


def count(engine: Engine, query: Any) -> int:
    """One number from the store."""
    with db.read(engine) as conn:
        return int(conn.execute(query).scalar_one())


def test_two_stacks_share_the_work_and_survive_one_losing_its_consumers(
    emulator: Emulator, shared_env: dict[str, str], stacks: list[SupervisedStack]
) -> None:
    settings = settings_for(stacks[0].env)
    engines = {name: db.make_engine(settings.database_url(name)) for name in STORE_NAMES}
    apis = [Api(stack.base_url) for stack in stacks]
    survivor, victim = stacks
    placed = Placed()

    # Given orders arriving through both webs, and both stacks consuming them...
    first = threading.Thread(target=post_orders, args=(apis, placed, ORDERS // 2, 1))
    first.start()
    wait_for(
        lambda: all(handled(s, "inventory_service") >= 10 for s in stacks),
        120,
        "both stacks to handle orders",
    )
    # ...when one stack loses its consumers in the middle of the load...
    kill_consumers(victim)
    first.join()
    post_orders(apis, placed, ORDERS - ORDERS // 2, seed=2)
    assert len(placed.emails) == ORDERS

    # ...then the survivor finishes every order (the victim's web still takes orders).
    web = engines["web"]
    not_done = (
        select(func.count())
        .select_from(order_services)
        .where(order_services.c.status != "processed")
    )
    wait_for(
        lambda: (
            count(web, select(func.count()).select_from(order_services)) == 3 * ORDERS
            and count(web, not_done) == 0
        ),
        # Messages the killed consumers held come back when their visibility ends.
        240,
        "every order processed by every service",
        interval=1,
    )
    assert count(web, select(func.count()).select_from(outbox)) == ORDERS
    assert count(web, select(func.count()).where(outbox.c.published_at.is_(None))) == 0

    # One email per order...
    messages = requests.get(f"{emulator.endpoint_url}/_aws/ses", timeout=30).json()["messages"]
    recipients = set(placed.emails.values())
    sent = Counter(
        to for m in messages for to in m["Destination"]["ToAddresses"] if to in recipients
    )
    assert sent == Counter(recipients), "some order got no email, or more than one"
    # ...stock reserved once per order line...
    with db.read(engines["inventory"]) as conn:
        rows = {r.sku: r for r in conn.execute(select(stock))}
    catalog = load_catalog(settings.catalog_path)
    for sku, product in catalog.items():
        assert rows[sku].reserved == placed.units[sku], sku
        assert rows[sku].available + rows[sku].reserved == product.stock, sku
    # ...and every order counted once.
    summary = read_summary(engines["analytics"])
    assert summary["orders"] == ORDERS
    assert summary["units"] == sum(placed.units.values())
    for name in ("inventory", "analytics"):
        records = select(func.count()).select_from(processed_events)
        assert count(engines[name], records) == ORDERS, name
        done = records.where(processed_events.c.status == "processed")
        assert count(engines[name], done) == ORDERS, name
    # The email store keeps one record per confirmation instead.
    confirmations = select(func.count()).select_from(email_sends)
    assert count(engines["email"], confirmations) == ORDERS
    assert count(engines["email"], confirmations.where(email_sends.c.status == SENT)) == ORDERS
    # Nothing was given up on.
    clients = make_clients(settings)
    for spec in settings.topology.queues:
        url = clients.sqs.get_queue_url(QueueName=spec.dlq_name)["QueueUrl"]
        attributes = clients.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0", spec.dlq_name

    # Both stacks did real work, and the survivor took over after the kill.
    for program in ("email_service", "inventory_service", "analytics_service"):
        assert handled(victim, program) > 0, program
        assert handled(survivor, program) > handled(victim, program), program
    for engine in engines.values():
        engine.dispose()
