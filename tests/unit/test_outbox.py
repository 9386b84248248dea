"""The outbox relay on a real SQLite store and moto's SNS: publish, and publish again
what the broker lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, update

from pubsub_supervisor import db
from pubsub_supervisor.catalog import load_catalog
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.events import ServiceResult, utcnow
from pubsub_supervisor.settings import Settings
from web import store
from web.outbox import CommitPublisher, OutboxRelay
from web.schema import outbox
from web.validation import validate_order

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url("web"))
    store.create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """A topic with a queue subscribed, to count what the relay published."""
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="orders")["TopicArn"]
        queue = sqs.create_queue(QueueName="copies")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        yield {"sns": sns, "sqs": sqs, "topic": topic, "queue": queue}


def place(engine: Engine, settings: Settings) -> str:
    catalog = load_catalog(settings.catalog_path)
    order, errors = validate_order(
        {"customer_email": "a@example.com", "items": [{"sku": "KB-001", "quantity": 1}]}, catalog
    )
    assert order is not None, errors
    return store.place_order(engine, order, catalog, "trace").order_id


def copies(aws: dict[str, Any]) -> int:
    attrs = aws["sqs"].get_queue_attributes(
        QueueUrl=aws["queue"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def age_publications(engine: Engine, seconds: float) -> None:
    with db.write(engine) as conn:
        conn.execute(update(outbox).values(published_at=utcnow() - timedelta(seconds=seconds)))


def report(engine: Engine, order_id: str, *services: str) -> None:
    for service in services:
        store.apply_result(
            engine, ServiceResult(order_id=order_id, service=service, status="processed")
        )


def test_pending_orders_are_republished_after_the_delay(
    engine: Engine, settings: Settings, aws: dict[str, Any]
) -> None:
    relay = OutboxRelay(engine, aws["sns"], {store.ORDER_EVENTS: aws["topic"]}, republish_after=60)
    stuck = place(engine, settings)
    done = place(engine, settings)
    assert relay.relay_once() == 2
    assert copies(aws) == 2
    # Fresh publications are left alone.
    assert relay.republish_stale() == 0
    report(engine, done, "email", "inventory", "analytics")
    report(engine, stuck, "email", "analytics")  # inventory never reported
    age_publications(engine, 61)
    assert relay.republish_stale() == 1
    assert copies(aws) == 3
    assert relay.republished == 1
    # Published again just now: not again until another delay has passed.
    assert relay.republish_stale() == 0
    assert relay.relay_once() == 0


def test_nothing_is_republished_while_the_queues_have_a_backlog(
    engine: Engine, settings: Settings, aws: dict[str, Any]
) -> None:
    waiting = [5]
    relay = OutboxRelay(
        engine,
        aws["sns"],
        {store.ORDER_EVENTS: aws["topic"]},
        republish_after=60,
        backlog=lambda: waiting[0],
    )
    place(engine, settings)
    assert relay.relay_once() == 1
    age_publications(engine, 61)
    # Orders may just be queued behind others: wait for the consumers to catch up.
    relay._next_sweep = 0
    relay._maybe_sweep()
    assert relay.republished == 0
    waiting[0] = 0
    relay._next_sweep = 0
    relay._maybe_sweep()
    assert relay.republished == 1


@pytest.fixture
def publisher(engine: Engine, aws: dict[str, Any]) -> Iterator[CommitPublisher]:
    """A publisher after commit, closed (its thread ended) before the store is disposed: a
    thread still marking a row published would check its connection in to a dead pool."""
    publisher = CommitPublisher(
        lambda: OutboxRelay(engine, aws["sns"], {store.ORDER_EVENTS: aws["topic"]})
    )
    yield publisher
    publisher.close()


def test_an_event_is_published_right_after_its_commit_and_only_once(
    engine: Engine, settings: Settings, aws: dict[str, Any], publisher: CommitPublisher
) -> None:
    place(engine, settings)
    place(engine, settings)
    assert publisher.publish_due() == 2
    # The relay's poll finds nothing left: each event went out once.
    assert OutboxRelay(engine, aws["sns"], {store.ORDER_EVENTS: aws["topic"]}).relay_once() == 0
    assert copies(aws) == 2


def test_notify_publishes_from_a_thread_without_blocking(
    engine: Engine, settings: Settings, aws: dict[str, Any], publisher: CommitPublisher
) -> None:
    place(engine, settings)
    publisher.notify()
    deadline = time.monotonic() + 10
    while copies(aws) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert copies(aws) == 1


def test_close_publishes_what_was_committed_before_the_process_exits(
    engine: Engine, settings: Settings, aws: dict[str, Any], publisher: CommitPublisher
) -> None:
    publisher.notify()
    place(engine, settings)
    publisher.close()
    assert copies(aws) == 1


def test_close_during_a_pass_that_began_before_the_commit_publishes_it(
    engine: Engine, settings: Settings, aws: dict[str, Any]
) -> None:
    """The thread's pass found nothing due; the order commits and close() is called while
    that pass is still finishing: close() must not end the thread before one more pass."""
    in_pass = threading.Event()

    class SlowFirstPass(OutboxRelay):
        passes = 0

        def relay_once(self) -> int:
            published = super().relay_once()
            SlowFirstPass.passes += 1
            if SlowFirstPass.passes == 1:
                in_pass.set()
                # Finish this pass only once close() has been called.
                deadline = time.monotonic() + 5
                while not commit_publisher._closing.is_set() and time.monotonic() < deadline:
                    time.sleep(0.005)
            return published

    commit_publisher = CommitPublisher(
        lambda: SlowFirstPass(engine, aws["sns"], {store.ORDER_EVENTS: aws["topic"]})
    )
    try:
        commit_publisher.notify()
        assert in_pass.wait(5)
        place(engine, settings)
        commit_publisher.close()
        assert copies(aws) == 1
    finally:
        commit_publisher.close()
