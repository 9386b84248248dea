"""The scale-out compose override run for real: one program per container on one
PostgreSQL, two instances of the email and inventory services, one of each killed with
SIGKILL (`docker kill`) under a load of orders. Every order is processed once: one email,
its stock reserved once, counted once.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, func, select

from devtools.emulator import free_port
from pubsub_ops import cli
from pubsub_supervisor import db
from pubsub_supervisor.catalog import load_catalog
from pubsub_supervisor.clients import make_clients
from pubsub_supervisor.idempotency import processed_events
from pubsub_supervisor.settings import STORE_NAMES
from services.analytics.handler import read_summary
from services.email.sends import SENT, email_sends
from services.inventory.handler import stock
from tests.support.compose import ComposeStack
from tests.support.docker import LOCALSTACK_IMAGES, POSTGRES_IMAGES, local_image, run_docker
from tests.support.fixtures import settings_for
from tests.support.orders import SKU, OrderStream, dlq_depths
from tests.support.stack import ROOT, Api, wait_for
from web.schema import order_items, order_services, orders, outbox

pytestmark = [pytest.mark.docker, pytest.mark.integration]

#: The services run twice; one instance of each is killed.
SCALED = ("email", "inventory")
#: Short leases: what a killed instance held comes back to the survivor in seconds.
LEASE_SECONDS = "10"
#: Publishes the database on 127.0.0.1 so that the test can read the stores.
DATABASE_PORT = """\
services:
  postgres:
    ports:
      - "127.0.0.1:${SCALE_POSTGRES_PORT}:5432"
"""


@dataclass
class Scaled:
    """The running project, and how to reach it from the test."""

    compose: ComposeStack
    api: Api
    emulator_url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaled]:
    """`pubsub compose-scale`, then `up -d` with two email and inventory instances."""
    folder = tmp_path_factory.mktemp("compose-scale")
    override = folder / "docker-compose.scale.yml"
    assert cli.main(["compose-scale", "-o", str(override)]) == 0
    database_port = folder / "database-port.yml"
    database_port.write_text(DATABASE_PORT)
    variables = {
        "LOCALSTACK_IMAGE": local_image("LOCALSTACK_IMAGE", LOCALSTACK_IMAGES),
        "POSTGRES_IMAGE": local_image("POSTGRES_IMAGE", POSTGRES_IMAGES),
        "APP_IMAGE": os.environ.get("APP_IMAGE", "pubsub-supervisor/app:latest"),
        "LOCALSTACK_PORT": str(free_port()),
        "SCALE_WEB_PORT": str(free_port()),
        "SCALE_POSTGRES_PORT": str(free_port()),
        "QUEUE_VISIBILITY_TIMEOUT": LEASE_SECONDS,
        "OUTBOX_CLAIM_SECONDS": LEASE_SECONDS,
        # Longer than the lease: a Send event the killed email instance had taken comes
        # back to the survivor only when its visibility ends, and must count before then.
        "EMAIL_CONFIRM_SECONDS": "16",
        "CONSUMER_CONCURRENCY": "4",
        # One test client sends every order: no per-recipient limit, and a per-address one
        # it never reaches (compose reads an empty value as unset: the 30/minute default).
        "ORDER_RATE_LIMIT": "100000/minute",
        "MAX_ORDERS_PER_EMAIL_PER_HOUR": "0",
    }
    project = f"pubsub-scale-{uuid.uuid4().hex[:8]}"
    stack = ComposeStack(
        ROOT, project, variables, folder / "empty.env", overrides=(override, database_port)
    )
    try:
        started = time.monotonic()
        scale = [arg for name in SCALED for arg in ("--scale", f"{name}=2")]
        stack.compose("up", "--detach", *scale, timeout=600)
        stack.wait_healthy("web")
        print(f"scale-out project up in {time.monotonic() - started:.1f} s")
        yield Scaled(
            compose=stack,
            api=Api(f"http://127.0.0.1:{variables['SCALE_WEB_PORT']}"),
            emulator_url=f"http://127.0.0.1:{variables['LOCALSTACK_PORT']}",
            env={
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{variables['LOCALSTACK_PORT']}",
                "DATABASE_URL": (
                    "postgresql+psycopg://pubsub:pubsub@127.0.0.1:"
                    f"{variables['SCALE_POSTGRES_PORT']}/pubsub"
                ),
            },
        )
    finally:
        stack.down()


def handled(container: str) -> int:
    """Orders one container has logged as handled."""
    result = run_docker("logs", container, timeout=60)
    return (result.stdout + result.stderr).count('"order handled"')


def running(container: str) -> bool:
    """True while the container runs."""
    result = run_docker("inspect", "--format", "{{.State.Running}}", container)
    return result.stdout.strip() == "true"


def count(engine: Engine, query: Any) -> int:
    """One number from the store."""
    with db.read(engine) as conn:
        return int(conn.execute(query).scalar_one())


def test_killed_instances_lose_no_order_and_repeat_no_effect(scaled: Scaled) -> None:
    instances = {name: scaled.compose.container_ids(name) for name in SCALED}
    assert {name: len(ids) for name, ids in instances.items()} == dict.fromkeys(SCALED, 2)
    tag = f"scale{uuid.uuid4().hex[:8]}"

    # Given orders arriving while both instances of each scaled service handle them...
    with OrderStream(scaled.api, tag, rate=10) as stream:
        wait_for(
            lambda: all(handled(c) >= 5 for ids in instances.values() for c in ids),
            120,
            "both instances of each scaled service to handle orders",
            interval=1,
        )
        # ...when one instance of each is killed (SIGKILL) in the middle of the load...
        victims = {name: ids[0] for name, ids in instances.items()}
        survivors = {name: ids[1] for name, ids in instances.items()}
        before_kill = {name: handled(c) for name, c in survivors.items()}
        for container in victims.values():
            assert run_docker("kill", container).returncode == 0
        stream.wait_accepted(len(stream.accepted) + 60)
    accepted = set(stream.accepted)
    for name, container in victims.items():
        assert not running(container), f"the killed {name} instance runs again"

    # ...then the survivors finish every order, each service once.
    settings = settings_for(scaled.env)
    engines = {name: db.make_engine(settings.database_url(name)) for name in STORE_NAMES}
    try:
        web = engines["web"]
        mine = select(orders.c.id).where(orders.c.customer_email.like(f"%@{tag}.%"))
        not_done = (
            select(func.count())
            .select_from(order_services)
            .where(order_services.c.order_id.in_(mine), order_services.c.status != "processed")
        )
        wait_for(
            lambda: count(web, not_done) == 0,
            # What the killed instances held comes back when its visibility ends.
            120,
            "every order processed by every service",
            interval=1,
        )
        with db.read(web) as conn:
            stored = dict(
                conn.execute(
                    select(orders.c.id, orders.c.customer_email).where(orders.c.id.in_(mine))
                ).all()
            )
            units = int(
                conn.execute(
                    select(func.sum(order_items.c.quantity)).where(order_items.c.order_id.in_(mine))
                ).scalar_one()
            )
        assert set(stored) == accepted
        assert count(web, select(func.count()).where(outbox.c.published_at.is_(None))) == 0
        statuses = select(func.count()).select_from(order_services)
        assert count(web, statuses) == 3 * len(accepted)

        # One email per order...
        mail = requests.get(f"{scaled.emulator_url}/_aws/ses", timeout=30).json()["messages"]
        recipients = set(stored.values())
        sent = Counter(
            to for m in mail for to in m["Destination"]["ToAddresses"] if to in recipients
        )
        assert sent == Counter(recipients), "some order got no email, or more than one"
        # ...its stock reserved once (only this test orders in this project)...
        with db.read(engines["inventory"]) as conn:
            row = conn.execute(select(stock).where(stock.c.sku == SKU)).one()
        assert row.reserved == units
        assert row.available + row.reserved == load_catalog(settings.catalog_path)[SKU].stock
        # ...and counted once.
        summary = read_summary(engines["analytics"])
        assert (summary["orders"], summary["units"]) == (len(accepted), units)
        for name in ("inventory", "analytics"):
            done = select(func.count()).where(processed_events.c.status == "processed")
            assert count(engines[name], done) == len(accepted), name
        confirmations = select(func.count()).where(email_sends.c.status == SENT)
        assert count(engines["email"], confirmations) == len(accepted)
    finally:
        for engine in engines.values():
            engine.dispose()

    # Nothing was given up on, and the survivors took over after the kill.
    clients = make_clients(settings)
    dead_letters = [spec.dlq_name for spec in settings.topology.queues]
    assert sum(dlq_depths(clients.sqs, dead_letters).values()) == 0
    for name, container in survivors.items():
        assert handled(container) > before_kill[name], name
    print(
        f"{len(accepted)} orders; handled by the survivors after the kill: "
        f"{ {name: handled(c) - before_kill[name] for name, c in survivors.items()} }"
    )
