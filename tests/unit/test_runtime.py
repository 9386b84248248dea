"""The consumer runtime in-process, on moto's SQS: backoff, dead-lettering, duplicates in
one batch, the visibility heartbeat, and what a stop hands back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, select, update

from pubsub_supervisor import db, idempotency
from pubsub_supervisor.errors import PoisonMessage, RetryLater
from pubsub_supervisor.idempotency import Outcome
from pubsub_supervisor.runtime import Consumer, ConsumerConfig, Message, retry_delay
from pubsub_supervisor.runtime.middleware import Middleware

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def sqs() -> Iterator[SQSClient]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def make_queue(sqs: SQSClient, name: str, *, visibility: int = 30, max_receives: int = 3) -> str:
    """A queue with a DLQ, as the topology makes them."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
    return sqs.create_queue(
        QueueName=name,
        Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": policy},
    )["QueueUrl"]


def send(sqs: SQSClient, url: str, body: str, event_id: str | None = None) -> None:
    attributes: Any = (
        {"event_id": {"DataType": "String", "StringValue": event_id}} if event_id else {}
    )
    sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)


def receive_all(sqs: SQSClient, url: str, visibility: int = 0) -> list[Any]:
    return list(
        sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
    )


def queue_counts(sqs: SQSClient, url: str) -> tuple[int, int]:
    """(visible, in flight)."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]),
        int(attrs["ApproximateNumberOfMessagesNotVisible"]),
    )


class Running:
    """A consumer on a thread, stopped (and drained) at the end of the test."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.thread = threading.Thread(target=consumer.run, daemon=True)

    def __enter__(self) -> Consumer:
        self.thread.start()
        return self.consumer

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "consumer did not stop"


def config(**overrides: Any) -> ConsumerConfig:
    values: dict[str, Any] = {"wait_seconds": 1, "concurrency": 4, "drain_seconds": 5}
    return ConsumerConfig(**{**values, **overrides})


def until(check: Callable[[], object], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("receives", "expected"),
    [(0, 1), (1, 1), (2, 2), (3, 4), (5, 16), (9, 256), (10, 300), (500, 300)],
)
def test_retry_delay_doubles_per_receive_and_is_capped(receives: int, expected: int) -> None:
    assert retry_delay(receives, base=1, cap=300) == expected


def test_retry_delay_scales_with_the_base() -> None:
    assert [retry_delay(n, base=5, cap=60) for n in range(1, 6)] == [5, 10, 20, 40, 60]


def test_successes_are_deleted_and_failures_retried_with_backoff(sqs: SQSClient) -> None:
    url = make_queue(sqs, "mixed")
    for body in ("ok-1", "fail", "ok-2"):
        send(sqs, url, body)
    handled: list[str] = []

    def handler(message: Message) -> None:
        handled.append(message.body)
        if message.body == "fail":
            raise RuntimeError("boom")

    consumer = Consumer(sqs, url, handler, config=config(backoff_base=30))
    with Running(consumer):
        until(lambda: consumer.stats.processed == 2 and consumer.stats.retried == 1)
    assert sorted(handled) == ["fail", "ok-1", "ok-2"]
    # Only the failure is left, invisible for its backoff (30 s for the first receive).
    assert queue_counts(sqs, url) == (0, 1)
    assert consumer.stats.dead_lettered == 0


def test_a_message_that_always_fails_is_dead_lettered_with_the_reason(sqs: SQSClient) -> None:
    url = make_queue(sqs, "failing", max_receives=3)
    send(sqs, url, "bad", event_id="e-1")
    send(sqs, url, "good")
    calls: list[int] = []

    def handler(message: Message) -> None:
        if message.body == "bad":
            calls.append(message.receive_count)
            raise ValueError("always wrong")

    consumer = Consumer(sqs, url, handler, config=config(backoff_base=1))
    with Running(consumer):
        until(lambda: consumer.stats.dead_lettered == 1, timeout=30)
    assert calls == [1, 2, 3]
    assert consumer.stats.processed == 1
    assert queue_counts(sqs, url) == (0, 0)
    dead = receive_all(sqs, url.replace("failing", "failing-dlq"))
    assert [m["Body"] for m in dead] == ["bad"]
    attributes = {k: v["StringValue"] for k, v in dead[0]["MessageAttributes"].items()}
    assert attributes["dead_letter_reason"] == "failed 3 times: ValueError: always wrong"
    assert attributes["source_queue"] == "failing"
    assert attributes["receive_count"] == "3"
    # The original attributes travel with it, so a redrive keeps the event id.
    assert attributes["event_id"] == "e-1"


def test_poison_is_dead_lettered_at_once_and_others_go_on(sqs: SQSClient) -> None:
    url = make_queue(sqs, "poison")
    send(sqs, url, "{not json")
    for i in range(5):
        send(sqs, url, f"good-{i}")
    reported: list[str] = []

    def handler(message: Message) -> None:
        if message.body.startswith("{"):
            raise PoisonMessage("body is not JSON")

    consumer = Consumer(
        sqs, url, handler, config=config(), on_dead_letter=lambda _m, why: reported.append(why)
    )
    with Running(consumer):
        until(lambda: consumer.stats.processed == 5 and consumer.stats.dead_lettered == 1)
    assert reported == ["poison: body is not JSON"]
    assert consumer.stats.retried == 0
    assert queue_counts(sqs, url) == (0, 0)


def test_retry_later_uses_the_delay_it_asks_for(sqs: SQSClient) -> None:
    url = make_queue(sqs, "later")
    send(sqs, url, "wait")
    calls: list[float] = []

    def handler(_message: Message) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RetryLater("not yet", delay=2)

    consumer = Consumer(sqs, url, handler, config=config(visibility_timeout=30))
    with Running(consumer):
        until(lambda: consumer.stats.processed == 1)
    assert len(calls) == 2
    assert 1.8 <= calls[1] - calls[0] < 6


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Any, Table]]:
    """A real SQLite store with a counter the handler increments once per event."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'effects.sqlite3'}")
    counters = Table(
        "counters",
        MetaData(),
        Column("name", String, primary_key=True),
        Column("value", Integer, nullable=False),
    )
    counters.metadata.create_all(engine)
    idempotency.create_schema(engine)
    with db.write(engine) as conn:
        conn.execute(counters.insert().values(name="effects", value=0))
    yield engine, counters
    engine.dispose()


def test_the_same_event_twice_in_one_batch_has_one_effect(
    sqs: SQSClient, store: tuple[Any, Table]
) -> None:
    engine, counters = store
    url = make_queue(sqs, "dupes")
    for _ in range(2):
        send(sqs, url, "order", event_id="same-event")
    send(sqs, url, "order", event_id="other-event")
    active: dict[str, int] = {}
    overlaps: list[str] = []
    lock = threading.Lock()

    def effect(conn: Connection) -> Outcome:
        conn.execute(
            update(counters).where(counters.c.name == "effects").values(value=counters.c.value + 1)
        )
        return Outcome("processed")

    def handler(message: Message) -> None:
        with lock:
            active[message.event_id] = active.get(message.event_id, 0) + 1
            if active[message.event_id] > 1:
                overlaps.append(message.event_id)
        time.sleep(0.3)  # long enough for both copies to be in hand together
        try:
            idempotency.once(engine, message.event_id, "order", effect)
        finally:
            with lock:
                active[message.event_id] -= 1

    put_back: list[tuple[str | None, str]] = []

    class PutBack(Middleware):
        def after_retry(self, message: Message, delay: int, reason: str) -> None:
            put_back.append((message.event_id, reason))

    consumer = Consumer(sqs, url, handler, config=config(concurrency=4), middleware=[PutBack()])
    with Running(consumer):
        # Both copies of `same-event` and the other event are deleted in the end.
        until(lambda: consumer.stats.processed == 3, timeout=20)
    assert overlaps == []
    # The copy that arrived while its twin was in progress was put back: once, or again
    # each time it came back (after 1 s) with its twin still running, on a loaded machine.
    assert put_back, "the second copy was never put back"
    assert set(put_back) == {("same-event", "same event in progress")}
    assert consumer.stats.retried == len(put_back)
    assert queue_counts(sqs, url) == (0, 0)
    with db.read(engine) as conn:
        assert conn.execute(select(counters.c.value)).scalar_one() == 2


def test_stop_hands_back_unstarted_messages_and_finishes_the_one_in_hand(
    sqs: SQSClient,
) -> None:
    url = make_queue(sqs, "drain")
    for i in range(5):
        send(sqs, url, f"m-{i}")
    started = threading.Event()
    finish = threading.Event()
    handled: list[str] = []

    def handler(message: Message) -> None:
        started.set()
        finish.wait(10)
        handled.append(message.body)

    consumer = Consumer(sqs, url, handler, config=config(concurrency=1, visibility_timeout=30))
    running = Running(consumer)
    running.__enter__()
    until(lambda: started.is_set() and consumer.stats.received == 5)
    # Stop while the handler works: the four unstarted ones go back at once...
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    until(lambda: consumer.stats.released == 4)
    assert queue_counts(sqs, url) == (4, 1)
    # ...and the one in hand still finishes and is deleted before run() returns.
    finish.set()
    stopper.join(30)
    assert len(handled) == 1
    assert consumer.stats.processed == 1
    assert queue_counts(sqs, url) == (4, 0)


def slow_consumer(sqs: SQSClient, name: str, *, heartbeat: bool) -> tuple[list[str], Consumer]:
    """A queue with a 1 s visibility timeout and a handler that takes three of them."""
    url = make_queue(sqs, name, visibility=1, max_receives=10)
    send(sqs, url, "slow")
    calls: list[str] = []

    def handler(message: Message) -> None:
        calls.append(message.message_id)
        time.sleep(3)

    settings = config(visibility_timeout=1, concurrency=2, heartbeat=heartbeat)
    return calls, Consumer(sqs, url, handler, config=settings)


def test_heartbeat_keeps_a_slow_message_invisible_until_it_is_done(sqs: SQSClient) -> None:
    calls, consumer = slow_consumer(sqs, "slow", heartbeat=True)
    with Running(consumer):
        until(lambda: consumer.stats.processed == 1)
        time.sleep(1.5)  # past one more visibility timeout: nobody receives it again
    assert len(calls) == 1
    # Received once: it never became visible, to this consumer or any other replica.
    assert consumer.stats.received == 1
    assert consumer.stats.extended >= 3
    assert queue_counts(sqs, consumer.queue_url) == (0, 0)


def test_without_heartbeat_a_slow_message_becomes_visible_again(sqs: SQSClient) -> None:
    """The control for the test above: without the heartbeat the message reappears while
    it is handled (this process holds its copy back; another replica would run it)."""
    calls, consumer = slow_consumer(sqs, "slow-no-heartbeat", heartbeat=False)
    with Running(consumer):
        # Received again while in hand; this process holds the copy back (same event).
        until(lambda: consumer.stats.received >= 2 and consumer.stats.retried >= 1)
    assert len(calls) == 1


def test_heartbeat_stops_when_the_handler_ends(sqs: SQSClient) -> None:
    url = make_queue(sqs, "retry-delay", visibility=1)
    send(sqs, url, "later")
    calls: list[float] = []

    def handler(_message: Message) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(1.5)  # the heartbeat extends it meanwhile
            raise RetryLater("not yet", delay=3)

    consumer = Consumer(sqs, url, handler, config=config(visibility_timeout=1))
    with Running(consumer):
        until(lambda: consumer.stats.processed == 1)
        extended = consumer.stats.extended
    assert extended >= 1
    # Back after the retry delay, not after one visibility timeout: no extension after
    # the handler ended overwrote the delay.
    assert calls[1] - calls[0] >= 1.5 + 2.8


def test_a_queue_without_redrive_policy_is_consumed(sqs: SQSClient) -> None:
    url = sqs.create_queue(QueueName="plain")["QueueUrl"]
    send(sqs, url, "hello")
    consumer = Consumer(sqs, url, lambda _m: None, config=config())
    with Running(consumer):
        until(lambda: consumer.stats.processed == 1)


def test_exit_after_drain_flushes_the_logs_and_keeps_the_code() -> None:
    script = (
        "import logging, sys\n"
        "from pubsub_supervisor.runtime import exit_after_drain\n"
        "logging.basicConfig(stream=sys.stdout, format='%(message)s', level=logging.INFO)\n"
        "logging.info('consumer stopped')\n"
        "exit_after_drain(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (3, "consumer stopped\n")


def test_a_long_non_ascii_reason_survives_into_the_dlq_before_the_message_own_attributes(
    sqs: SQSClient,
) -> None:
    url = make_queue(sqs, "hostile")
    # A forged message with SQS's ten attributes of its own, the event id among them.
    own: Any = {f"a{i}": {"DataType": "String", "StringValue": "x"} for i in range(9)}
    own["event_id"] = {"DataType": "String", "StringValue": "e-9"}
    sqs.send_message(QueueUrl=url, MessageBody="forged", MessageAttributes=own)
    why = "quantité négative ✗ \x00" + "é" * 5000

    def handler(_message: Message) -> None:
        raise PoisonMessage(why)

    consumer = Consumer(sqs, url, handler, config=config())
    with Running(consumer):
        until(lambda: consumer.stats.dead_lettered == 1)
    dead = receive_all(sqs, url.replace("hostile", "hostile-dlq"))
    attributes = {k: v["StringValue"] for k, v in dead[0]["MessageAttributes"].items()}
    assert len(attributes) == 10
    reason = attributes["dead_letter_reason"]
    assert reason.startswith("poison: quantité négative ✗ \ufffdéé")
    assert len(reason) == 1000
    assert reason.endswith("…")
    assert attributes["event_id"] == "e-9"
    assert attributes["source_queue"] == "hostile"
