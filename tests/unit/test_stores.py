"""The stores on SQLite and on PostgreSQL: migrations, and effects once across processes.

Real databases (a SQLite file; PostgreSQL from TEST_POSTGRES_URL or a throwaway cluster)
and real processes; only SNS is stood in for, by a recording stub, in the relay tests.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    DateTime,
    Engine,
    MetaData,
    column,
    func,
    insert,
    inspect,
    select,
    table,
    text,
)

from pubsub_supervisor import db, idempotency
from pubsub_supervisor.catalog import Product
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.errors import RetryLater
from pubsub_supervisor.events import OrderCreated, OrderItem, new_id, utcnow
from pubsub_supervisor.migrate import current, head, migrate
from pubsub_supervisor.settings import STORE_NAMES, Settings
from services.analytics import handler as analytics
from services.email import sends
from services.inventory import handler as inventory
from tests.conftest import ROOT
from tests.support import store_workers
from web import schema, store
from web.outbox import OutboxRelay
from web.validation import OrderIn

PROCESSES = 4
CATALOG = {
    "AA-1": Product(sku="AA-1", name="A", price_cents=100, stock=10_000),
    "BB-2": Product(sku="BB-2", name="B", price_cents=250, stock=10_000),
    "CC-3": Product(sku="CC-3", name="C", price_cents=990, stock=10_000),
}


def _store_metadata(store_name: str) -> MetaData:
    """The tables the code of a store expects."""
    metadata = MetaData()
    tables = {
        "web": list(schema.metadata.tables.values()),
        "email": [sends.email_sends],
        "inventory": [
            *inventory.metadata.tables.values(),
            idempotency.processed_events,
            idempotency.processed_orders,
        ],
        "analytics": [
            *analytics.metadata.tables.values(),
            idempotency.processed_events,
            idempotency.processed_orders,
        ],
    }[store_name]
    for each in tables:
        each.to_metadata(metadata)
    return metadata


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """DATABASE_URL of empty stores on one engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/{{store}}.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engines(database_url: str) -> Iterator[dict[str, Engine]]:
    """An engine per store (not migrated yet)."""
    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    engines = {name: make_engine(settings.database_url(name)) for name in STORE_NAMES}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """Worker processes, started (and their imports done) once for the module."""
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        # Start every worker and import the work there, so that tasks start on time.
        assert len(set(pool.map(store_workers.warm_up, [1.0] * PROCESSES))) == PROCESSES
        yield pool


def in_processes[T](
    pool: ProcessPoolExecutor, work: Callable[..., T], *calls: tuple[Any, ...]
) -> list[T]:
    """Run `work(*args)` for each call in its own worker process, all starting together."""
    assert len(calls) <= PROCESSES
    start_at = time.time() + 1.0
    futures = [pool.submit(work, *args, start_at) for args in calls]
    return [f.result(timeout=120) for f in futures]


def make_event(rng: random.Random) -> OrderCreated:
    """An order of 1-3 lines from the test catalog."""
    skus = rng.sample(sorted(CATALOG), rng.randint(1, 3))
    return OrderCreated(
        order_id=new_id(),
        customer_email="buyer@example.com",
        items=tuple(
            OrderItem(sku=s, name=s, quantity=rng.randint(1, 5), unit_price_cents=100) for s in skus
        ),
    )


# -- migrations -----------------------------------------------------------------------------


def test_migrated_stores_match_the_table_definitions(engines: dict[str, Engine]) -> None:
    for name, engine in engines.items():
        assert migrate(engine, name) == "base"
        assert current(engine) == head(name)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), _store_metadata(name))
        assert diff == [], f"{name}: migrations and table definitions differ: {diff}"


def test_migrating_again_changes_nothing(engines: dict[str, Engine]) -> None:
    for name, engine in engines.items():
        migrate(engine, name)
        assert migrate(engine, name) == head(name)


def test_programs_starting_together_migrate_once(
    pool: ProcessPoolExecutor, database_url: str
) -> None:
    before = in_processes(pool, store_workers.migrate_all, *[(database_url,)] * PROCESSES)
    # Exactly one process found each store empty; the others waited, then found it at head.
    for name in STORE_NAMES:
        assert Counter(b[name] for b in before) == {"base": 1, head(name): PROCESSES - 1}


def test_a_store_from_before_migrations_is_stamped_and_upgraded(tmp_path: Path) -> None:
    # The web's tables as create_all made them before migrations existed (no claim columns).
    engine = make_engine(f"sqlite:///{tmp_path}/web.sqlite3")
    schema.metadata.create_all(engine)
    with db.write(engine) as conn:
        conn.execute(text("ALTER TABLE outbox DROP COLUMN claimed_by"))
        conn.execute(text("ALTER TABLE outbox DROP COLUMN claimed_until"))
        conn.execute(text("INSERT INTO product_stock (sku, stock) VALUES ('AA-1', 7)"))

    assert migrate(engine, "web") == "web0001"
    assert current(engine) == head("web")
    columns = {c["name"] for c in inspect(engine).get_columns("outbox")}
    assert {"claimed_by", "claimed_until"} <= columns
    with db.read(engine) as conn:
        assert conn.execute(text("SELECT stock FROM product_stock")).scalar() == 7
    engine.dispose()


# -- effects once, across processes -------------------------------------------------------


def test_duplicate_deliveries_in_several_processes_apply_once(
    pool: ProcessPoolExecutor, database_url: str, engines: dict[str, Engine]
) -> None:
    rng = random.Random(7)
    events = [make_event(rng) for _ in range(40)]
    # Every process handles every event: each event arrives PROCESSES times, concurrently.
    handled = in_processes(
        pool,
        store_workers.handle_events,
        *[(database_url, CATALOG, events, seed) for seed in range(PROCESSES)],
    )
    assert handled == [len(events)] * PROCESSES

    wanted: Counter[str] = Counter()
    for event in events:
        for item in event.items:
            wanted[item.sku] += item.quantity
    with db.read(engines["inventory"]) as conn:
        rows = conn.execute(select(inventory.stock)).all()
        records = conn.execute(select(func.count()).select_from(idempotency.processed_events))
        assert records.scalar_one() == len(events)
    assert {r.sku: r.reserved for r in rows} == {sku: wanted[sku] for sku in CATALOG}
    assert all(r.available + r.reserved == CATALOG[r.sku].stock for r in rows)

    summary = analytics.read_summary(engines["analytics"])
    assert summary["orders"] == len(events)
    assert summary["units"] == sum(wanted.values())
    assert summary["units_by_sku"] == dict(wanted)


def test_claims_across_processes_give_each_event_to_one_consumer(
    pool: ProcessPoolExecutor, database_url: str, engines: dict[str, Engine]
) -> None:
    migrate(engines["inventory"], "inventory")
    event_ids = [new_id() for _ in range(60)]
    got = in_processes(
        pool, store_workers.claim_events, *[(database_url, event_ids, 30, True)] * PROCESSES
    )
    claimed = Counter(e for per_process in got for e in per_process)
    assert claimed == Counter(event_ids)  # each claimed by one process, none lost


def test_a_dead_claimers_lease_is_taken_over_by_one_consumer(
    pool: ProcessPoolExecutor, database_url: str, engines: dict[str, Engine]
) -> None:
    engine = engines["inventory"]
    migrate(engine, "inventory")
    event_ids = [new_id() for _ in range(20)]
    # A consumer claims, then dies before sending (it never completes).
    for event_id in event_ids:
        assert idempotency.claim(engine, event_id, "order", lease_seconds=1) is None
    with pytest.raises(RetryLater):
        idempotency.claim(engine, event_ids[0], "order", lease_seconds=1)
    time.sleep(1.2)
    got = in_processes(
        pool, store_workers.claim_events, *[(database_url, event_ids, 30, False)] * PROCESSES
    )
    assert Counter(e for per_process in got for e in per_process) == Counter(event_ids)


def test_email_sends_across_processes_begin_each_attempt_once(
    pool: ProcessPoolExecutor, database_url: str, engines: dict[str, Engine]
) -> None:
    engine = engines["email"]
    migrate(engine, "email")
    event_ids = [new_id() for _ in range(60)]
    got = in_processes(
        pool, store_workers.begin_sends, *[(database_url, event_ids, 30, True)] * PROCESSES
    )
    # Each confirmation given to SES by one process, none left out.
    assert Counter(e for per_process in got for e in per_process) == Counter(event_ids)
    for event_id in event_ids:
        assert sends.get(engine, event_id) == sends.Send(
            sends.SENT, 1, ANY, None, f"ses-{event_id}"
        )


def test_an_order_replayed_under_new_event_ids_in_several_processes_is_sent_once(
    pool: ProcessPoolExecutor, database_url: str, engines: dict[str, Engine]
) -> None:
    engine = engines["email"]
    migrate(engine, "email")
    orders = [new_id() for _ in range(20)]
    # Each process gets every order under event ids of its own.
    calls = [
        (database_url, [(f"{order_id[:20]}-{p}", order_id) for order_id in orders])
        for p in range(PROCESSES)
    ]
    got = in_processes(pool, store_workers.begin_order_sends, *calls)
    sent = Counter(e.rsplit("-", 1)[0] for per_process in got for e in per_process)
    assert sent == Counter(order_id[:20] for order_id in orders)


def test_a_dead_senders_attempt_is_taken_over_by_one_consumer(
    pool: ProcessPoolExecutor, database_url: str, engines: dict[str, Engine]
) -> None:
    engine = engines["email"]
    migrate(engine, "email")
    event_ids = [new_id() for _ in range(20)]
    # A consumer begins each attempt, then dies before SES answers.
    for event_id in event_ids:
        start = sends.begin(engine, event_id, "order", lease_seconds=1, confirm_seconds=0)
        assert start.decision is sends.Decision.SEND
    again = sends.begin(engine, event_ids[0], "order", lease_seconds=1, confirm_seconds=0)
    assert again.decision is sends.Decision.BUSY
    time.sleep(1.2)
    # Past its lease (and, here at once, its confirmation window): one consumer sends again.
    got = in_processes(
        pool, store_workers.begin_sends, *[(database_url, event_ids, 30, False)] * PROCESSES
    )
    assert Counter(e for per_process in got for e in per_process) == Counter(event_ids)
    assert {sends.get(engine, e).attempts for e in event_ids} == {2}  # type: ignore[union-attr]


def test_email_records_of_both_tables_become_one_record(engines: dict[str, Engine]) -> None:
    """email0003 carries each event's `processed_events` record into its `email_sends` row."""
    engine = engines["email"]
    migrate(engine, "email", to="email0002")
    now = utcnow()
    later = now + timedelta(seconds=30)
    records = [  # event id, status, data, lease
        ("done", "processed", '{"ses_message_id": "ses-done"}', None),
        ("before-sends", "processed", '{"ses_message_id": "ses-old"}', None),
        ("in-flight", "in_progress", "{}", later),
        ("claimed-only", "in_progress", "{}", later),
    ]
    attempts = [  # event id, attempted at, ses message id
        ("done", now, "ses-done"),
        ("in-flight", now, None),
        ("lost-answer", now, "ses-lost"),
        ("refused", None, None),
        ("unanswered", now, None),
    ]
    # email_sends as email0002 made it.
    older_sends = table(
        "email_sends",
        *(column(c) for c in ("event_id", "order_id", "attempts", "ses_message_id")),
        column("attempted_at", DateTime(timezone=True)),
    )
    with db.write(engine) as conn:
        conn.execute(
            insert(idempotency.processed_events),
            [
                {"event_id": e, "order_id": "o", "status": s, "data": d, "claimed_until": u}
                | {"processed_at": now}
                for e, s, d, u in records
            ],
        )
        conn.execute(
            insert(older_sends),
            [
                {"event_id": e, "order_id": "o", "attempts": 1, "attempted_at": a}
                | {"ses_message_id": m}
                for e, a, m in attempts
            ],
        )

    assert migrate(engine, "email") == "email0002"
    assert "processed_events" not in inspect(engine).get_table_names()
    event_ids = {r[0] for r in records} | {a[0] for a in attempts}
    found = {e: sends.get(engine, e) for e in sorted(event_ids)}
    assert {e: (s.status, s.ses_message_id) if s else None for e, s in found.items()} == {
        "done": ("sent", "ses-done"),
        "before-sends": ("sent", "ses-old"),
        "in-flight": ("attempted", None),
        "claimed-only": None,  # claimed, never attempted: nothing went out
        "lost-answer": ("attempted", "ses-lost"),  # its redelivery settles it
        "refused": ("refused", None),
        "unanswered": ("attempted", None),
    }
    in_flight = found["in-flight"]
    assert in_flight is not None
    assert in_flight.claimed_until == later  # the claim's lease
    assert all(s.claimed_until is None for e, s in found.items() if s and e != "in-flight")
    outcome = {
        e: sends.begin(engine, e, "o", lease_seconds=30, confirm_seconds=60).decision
        for e, s in found.items()
        if s is not None
    }
    assert outcome == {
        "done": sends.Decision.SENT,
        "before-sends": sends.Decision.SENT,
        "in-flight": sends.Decision.BUSY,
        "lost-answer": sends.Decision.RECOVERED,
        "refused": sends.Decision.SEND,
        "unanswered": sends.Decision.UNCONFIRMED,
    }


# -- the outbox with several relays ---------------------------------------------------------


def _place_orders(engine: Engine, count: int) -> set[str]:
    request = OrderIn.model_validate(
        {"customer_email": "buyer@example.com", "items": [{"sku": "AA-1", "quantity": 1}]}
    )
    return {
        store.place_order(engine, request, CATALOG, trace_id=new_id()).event_id
        for _ in range(count)
    }


def test_relays_sharing_the_outbox_publish_each_event_once(
    pool: ProcessPoolExecutor, database_url: str, engines: dict[str, Engine]
) -> None:
    engine = engines["web"]
    migrate(engine, "web")
    placed = _place_orders(engine, 150)
    published = in_processes(pool, store_workers.relay_until_empty, *[(database_url, 30)] * 3)
    event_ids = Counter(
        OrderCreated.model_validate_json(body).event_id for bodies in published for body in bodies
    )
    assert event_ids == Counter(placed)
    if engine.dialect.name == "postgresql":
        # Row locks let relays work side by side (SQLite's one write lock may favour one).
        assert sum(1 for bodies in published if bodies) >= 2, "one relay did all the work"


def test_rows_of_a_dead_relay_are_published_after_its_lease(
    engines: dict[str, Engine],
) -> None:
    engine = engines["web"]
    migrate(engine, "web")
    placed = _place_orders(engine, 5)
    dead = OutboxRelay(engine, store_workers.RecordingSns(), {}, claim_seconds=1)  # type: ignore[arg-type]
    assert len(dead.claim()) == 5  # ...and it dies before publishing
    sns = store_workers.RecordingSns()
    alive = OutboxRelay(engine, sns, {store.ORDER_EVENTS: "arn:topic"}, claim_seconds=1)  # type: ignore[arg-type]
    assert alive.relay_once() == 0  # the rows are leased
    time.sleep(1.2)
    assert alive.relay_once() == 5
    assert {OrderCreated.model_validate_json(b).event_id for b in sns.published} == placed
    assert alive.pending() == 0


def test_pubsub_migrate_reports_what_it_changed(database_url: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / ".venv" / "bin" / "pubsub"), "migrate", *args],
            env={**os.environ, "ENV_FILE": "", "DATABASE_URL": database_url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"{name}: base -> {head(name)}" for name in STORE_NAMES]
    again = run("web")
    assert again.stdout == "web: up to date\n"
    assert run("nope").returncode == 2


def test_orders_handled_before_once_per_order_keep_their_first_outcome(
    engines: dict[str, Engine],
) -> None:
    """inventory0002 and analytics0002 record each order's earliest finished event."""
    for name in ("inventory", "analytics"):
        engine = engines[name]
        migrate(engine, name, to=f"{name}0001")
        now = utcnow()
        records = [  # event id, order id, status, seconds after now
            ("first", "o-1", "rejected", 0),
            ("replayed", "o-1", "processed", 5),
            ("only", "o-2", "processed", 1),
            ("claimed", "o-3", "in_progress", 2),
        ]
        with db.write(engine) as conn:
            conn.execute(
                insert(idempotency.processed_events),
                [
                    {"event_id": e, "order_id": o, "status": s, "data": "{}"}
                    | {"processed_at": now + timedelta(seconds=t)}
                    for e, o, s, t in records
                ],
            )
        assert migrate(engine, name) == f"{name}0001"
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    idempotency.processed_orders.c.order_id,
                    idempotency.processed_orders.c.event_id,
                    idempotency.processed_orders.c.status,
                )
            ).all()
        assert sorted(tuple(r) for r in rows) == [
            ("o-1", "first", "rejected"),
            ("o-2", "only", "processed"),
        ]
