"""Work the store tests run in several processes at once (spawned: importable functions)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from typing import Any

from pubsub_supervisor import idempotency
from pubsub_supervisor.catalog import Product
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.errors import RetryLater
from pubsub_supervisor.events import OrderCreated
from pubsub_supervisor.migrate import migrate
from pubsub_supervisor.settings import STORE_NAMES, Settings
from services.analytics.handler import AnalyticsService
from services.email import sends
from services.inventory.handler import InventoryService
from web.outbox import OutboxRelay


def warm_up(seconds: float) -> int:
    """Keep a worker busy for a moment (so each worker gets one); importing this is the point."""
    time.sleep(seconds)
    return os.getpid()


def _settings(database_url: str) -> Settings:
    return Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]


def _wait_until(start_at: float) -> None:
    # Every process starts its work at the same moment, so the work really overlaps.
    time.sleep(max(0.0, start_at - time.time()))


def migrate_all(database_url: str, start_at: float) -> dict[str, str]:
    """Migrate every store; returns the revision each was at before."""
    settings = _settings(database_url)
    engines = {store: make_engine(settings.database_url(store)) for store in STORE_NAMES}
    _wait_until(start_at)
    try:
        return {store: migrate(engine, store) for store, engine in engines.items()}
    finally:
        for engine in engines.values():
            engine.dispose()


def handle_events(
    database_url: str,
    catalog: dict[str, Product],
    events: Sequence[OrderCreated],
    seed: int,
    start_at: float,
) -> int:
    """Run inventory and analytics on every event, in a shuffled order; returns how many."""
    settings = _settings(database_url)
    inventory = InventoryService(make_engine(settings.database_url("inventory")), catalog)
    analytics = AnalyticsService(make_engine(settings.database_url("analytics")))
    order = list(events)
    random.Random(seed).shuffle(order)
    _wait_until(start_at)
    for event in order:
        inventory(event)
        analytics(event)
    inventory.engine.dispose()
    analytics.engine.dispose()
    return len(order)


def claim_events(
    database_url: str, event_ids: Sequence[str], lease_seconds: int, complete: bool, start_at: float
) -> list[str]:
    """Claim each event for an external effect; returns the ones this process got."""
    # Any store with the idempotency records will do (the email store keeps its own).
    engine = make_engine(_settings(database_url).database_url("inventory"))
    got: list[str] = []
    _wait_until(start_at)
    for event_id in event_ids:
        try:
            done = idempotency.claim(engine, event_id, "order", lease_seconds)
        except RetryLater:
            continue
        if done is None:
            got.append(event_id)
            if complete:
                idempotency.complete(engine, event_id, idempotency.Outcome("processed"))
    engine.dispose()
    return got


def begin_sends(
    database_url: str,
    event_ids: Sequence[str],
    lease_seconds: int,
    answer: bool,
    start_at: float,
) -> list[str]:
    """Begin each event's email send as the email service does (recording SES's answer
    when `answer`); returns the events this process would have called SES for."""
    engine = make_engine(_settings(database_url).database_url("email"))
    got: list[str] = []
    _wait_until(start_at)
    for event_id in event_ids:
        start = sends.begin(
            engine, event_id, "order", lease_seconds=lease_seconds, confirm_seconds=0
        )
        if start.decision is sends.Decision.SEND:
            got.append(event_id)
            if answer:
                sends.accepted(engine, event_id, f"ses-{event_id}")
    engine.dispose()
    return got


def begin_order_sends(
    database_url: str, orders: Sequence[tuple[str, str]], start_at: float
) -> list[str]:
    """Begin each (event id, order id) send once per order, as the email service does;
    returns the events this process would have called SES for."""
    engine = make_engine(_settings(database_url).database_url("email"))
    got: list[str] = []
    _wait_until(start_at)
    for event_id, order_id in orders:
        start = sends.begin(
            engine, event_id, order_id, lease_seconds=30, confirm_seconds=60, per_order=True
        )
        if start.decision is sends.Decision.SEND:
            got.append(event_id)
    engine.dispose()
    return got


class RecordingSns:
    """Stands in for SNS: accepts every entry and remembers what was published."""

    def __init__(self, latency: float = 0.0) -> None:
        self.published: list[str] = []
        self.latency = latency

    def publish_batch(self, **kwargs: Any) -> dict[str, Any]:
        """Accept the whole batch (after `latency` seconds, like a call over the network)."""
        time.sleep(self.latency)
        entries = kwargs["PublishBatchRequestEntries"]
        self.published.extend(entry["Message"] for entry in entries)
        return {"Successful": [{"Id": e["Id"]} for e in entries], "Failed": []}


def relay_until_empty(database_url: str, claim_seconds: int, start_at: float) -> list[str]:
    """Run one outbox relay until nothing is left to claim; returns the bodies it published."""
    engine = make_engine(_settings(database_url).database_url("web"))
    sns = RecordingSns(latency=0.02)
    relay = OutboxRelay(engine, sns, {"order_events": "arn:topic"}, claim_seconds=claim_seconds)  # type: ignore[arg-type]
    _wait_until(start_at)
    idle_since: float | None = None
    while True:
        if relay.relay_once():
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        if relay.pending() == 0 or time.monotonic() - idle_since > claim_seconds + 3:
            break
        time.sleep(0.05)
    engine.dispose()
    return sns.published
