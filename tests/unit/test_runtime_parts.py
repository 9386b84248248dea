"""The consumer's parts one at a time: capacity, counters, visibility and heartbeat, the
ack batcher, the retry and dead-letter policy, and the poller (SQS is moto's)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from pubsub_supervisor.errors import PoisonMessage, RetryLater
from pubsub_supervisor.runtime import ConsumerStats, Message, Middleware
from pubsub_supervisor.runtime.acks import AckBatcher
from pubsub_supervisor.runtime.capacity import Capacity
from pubsub_supervisor.runtime.heartbeat import Heartbeat
from pubsub_supervisor.runtime.middleware import Hooks
from pubsub_supervisor.runtime.poller import Poller
from pubsub_supervisor.runtime.retries import Retries
from pubsub_supervisor.runtime.visibility import Visibility

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.usefixtures("aws_env")


def message(handle: str, event_id: str | None = None) -> Message:
    attributes = {"event_id": event_id} if event_id else {}
    return Message(f"id-{handle}", handle, "body", message_attributes=attributes)


class Recorder(Middleware):
    """Keeps every hook call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def after_retry(self, message: Message, delay: int, reason: str) -> None:
        self.calls.append(("retry", (message.body, delay, reason)))

    def after_dead_letter(self, message: Message, reason: str) -> None:
        self.calls.append(("dead_letter", (message.body, reason)))

    def after_ack(self, message: Message) -> None:
        self.calls.append(("ack", message.body))

    def after_release(self, messages: Sequence[Message]) -> None:
        self.calls.append(("release", sorted(m.body for m in messages)))

    def after_extend(self, messages: Sequence[Message]) -> None:
        self.calls.append(("extend", sorted(m.body for m in messages)))


# -- capacity ---------------------------------------------------------------------------


def test_capacity_counts_what_is_in_hand_and_asked_for() -> None:
    capacity = Capacity(limit=12)
    stopping = threading.Event()
    assert capacity.reserve(10, stopping)
    assert capacity.free() == 2
    capacity.received([message("a"), message("b")], 10, time.monotonic() + 30)
    assert (capacity.free(), capacity.in_hand()) == (10, 2)
    capacity.forget([message("a")])
    assert (capacity.free(), capacity.in_hand()) == (11, 1)


def test_capacity_waits_for_room_and_gives_up_on_stop() -> None:
    capacity = Capacity(limit=10)
    stopping = threading.Event()
    assert capacity.reserve(10, stopping)
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(capacity.reserve(10, stopping)))
    waiter.start()
    time.sleep(0.1)
    assert outcome == []  # no room: the second batch waits
    stopping.set()
    capacity.wake()
    waiter.join(5)
    assert outcome == [False]
    assert capacity.free() == 0  # nothing reserved by the refused one


def test_handled_messages_waiting_for_their_delete_leave_room_for_the_next_receive() -> None:
    capacity = Capacity(limit=12)
    stopping = threading.Event()
    done = [message(f"m-{i}") for i in range(10)]
    capacity.received(done, 0, time.monotonic() + 30)
    assert capacity.free() == 2  # a whole batch does not fit
    for m in done[:8]:
        capacity.handled(m)
    # Room again, though the heartbeat still keeps all ten until they are deleted; only
    # two may still end in a result or an ack (what the batchers linger for).
    assert capacity.reserve(10, stopping)
    assert (capacity.in_hand(), capacity.working()) == (10, 2)
    assert len(capacity.expiring(time.monotonic(), 60, time.monotonic() + 30)) == 10
    capacity.forget(done[:8])
    assert (capacity.in_hand(), capacity.free()) == (2, 0)


def test_capacity_refuses_a_second_start_of_the_same_event_until_it_finishes() -> None:
    capacity = Capacity(limit=10)
    first, twin = message("a", "e-1"), message("b", "e-1")
    capacity.received([first, twin], 0, time.monotonic() + 30)
    assert capacity.start(first)
    assert not capacity.start(twin)
    assert capacity.unstarted() == [twin]
    capacity.finish(first)
    assert capacity.start(twin)
    assert capacity.unstarted() == []


def test_capacity_names_the_messages_whose_visibility_is_about_to_end() -> None:
    capacity = Capacity(limit=10)
    now = time.monotonic()
    capacity.received([message("soon")], 0, now + 5)
    capacity.received([message("later")], 0, now + 25)
    assert [m.body for m in capacity.expiring(now, 15, now + 30)] == ["body"]
    # Extended now: not due again at the next look.
    assert capacity.expiring(now, 15, now + 30) == []


# -- counters ---------------------------------------------------------------------------


def test_stats_count_from_the_hooks() -> None:
    stats = ConsumerStats()
    hooks = Hooks([stats])
    hooks.emit("after_receive", "q", 3)
    hooks.emit("after_process", message("a"), 0.1, None)
    hooks.emit("after_process", message("b"), 0.1, RuntimeError("boom"))
    hooks.emit("after_retry", message("b"), 1, "boom")
    hooks.emit("after_dead_letter", message("c"), "poison")
    hooks.emit("after_release", [message("d"), message("e")])
    hooks.emit("after_extend", [message("f")])
    assert stats.snapshot() == {
        "received": 3,
        "processed": 1,
        "failed": 1,
        "retried": 1,
        "dead_lettered": 1,
        "released": 2,
        "extended": 1,
    }


def test_a_failing_middleware_does_not_stop_the_others() -> None:
    class Broken(Middleware):
        def after_ack(self, message: Message) -> None:
            raise RuntimeError("broken plugin")

    recorder = Recorder()
    Hooks([Broken(), recorder]).emit("after_ack", message("a"))
    assert recorder.calls == [("ack", "body")]


# -- on SQS -----------------------------------------------------------------------------


@pytest.fixture
def sqs() -> Iterator[SQSClient]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def queue_with_dlq(sqs: SQSClient, name: str, max_receives: int = 3) -> str:
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
    return sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]


def receive(sqs: SQSClient, url: str, count: int, visibility: int = 30) -> list[Message]:
    """Send `count` messages m-0.. and receive them all."""
    for i in range(count):
        sqs.send_message(QueueUrl=url, MessageBody=f"m-{i}")
    raw = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=visibility,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return sorted((Message.from_sqs(m) for m in raw), key=lambda m: m.body)


def visible(sqs: SQSClient, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_release_hands_messages_back_at_once(sqs: SQSClient) -> None:
    url = sqs.create_queue(QueueName="release")["QueueUrl"]
    capacity, recorder = Capacity(limit=20), Recorder()
    messages = receive(sqs, url, 2)
    capacity.received(messages, 0, time.monotonic() + 30)
    Visibility(sqs, url, capacity, Hooks([recorder])).release(messages)
    assert visible(sqs, url) == 2
    assert capacity.in_hand() == 0
    assert recorder.calls == [("release", ["m-0", "m-1"])]


def test_heartbeat_extends_only_what_is_about_to_reappear(sqs: SQSClient) -> None:
    url = sqs.create_queue(QueueName="beat")["QueueUrl"]
    capacity, recorder = Capacity(limit=20), Recorder()
    soon, later = receive(sqs, url, 2, visibility=30)
    capacity.received([soon], 0, time.monotonic() + 5)
    capacity.received([later], 0, time.monotonic() + 30)
    heartbeat = Heartbeat(Visibility(sqs, url, capacity, Hooks([recorder])), 30)
    assert heartbeat.beat() == 1
    assert recorder.calls == [("extend", ["m-0"])]
    assert heartbeat.beat() == 0


def test_heartbeat_never_extends_a_message_put_back_for_a_retry(sqs: SQSClient) -> None:
    url = sqs.create_queue(QueueName="no-overwrite")["QueueUrl"]
    capacity = Capacity(limit=20)
    (retried,) = receive(sqs, url, 1)
    capacity.received([retried], 0, time.monotonic())
    visibility = Visibility(sqs, url, capacity, Hooks([]))
    visibility.delay(retried, 60)
    assert Heartbeat(visibility, 30).beat() == 0


def test_ack_batcher_deletes_in_one_batch_and_stops_when_told(sqs: SQSClient) -> None:
    url = sqs.create_queue(QueueName="acks")["QueueUrl"]
    capacity, recorder, stopping = Capacity(limit=20), Recorder(), threading.Event()
    messages = receive(sqs, url, 3, visibility=0)
    capacity.received(messages, 0, time.monotonic() + 30)
    acks = AckBatcher(
        sqs, url, capacity=capacity, hooks=Hooks([recorder]), stopping=stopping, linger_seconds=1
    )
    for m in messages:
        acks.put(m)
    acks.stop(1)
    acks.run()  # gathers the three, deletes them, then sees the stop and returns
    assert recorder.calls == [("ack", "m-0"), ("ack", "m-1"), ("ack", "m-2")]
    assert capacity.in_hand() == 0
    assert visible(sqs, url) == 0


def gathering(**timing: Any) -> AckBatcher:
    """An ack batcher for gathering only (no SQS), with these timing arguments."""
    return AckBatcher(
        None,  # type: ignore[arg-type]  # gathering calls no SQS
        "q",
        capacity=Capacity(limit=30),
        hooks=Hooks([]),
        stopping=threading.Event(),
        **timing,
    )


def test_ack_batcher_gathers_at_most_one_sqs_batch() -> None:
    acks = gathering(linger_seconds=0)
    for i in range(12):
        acks.put(message(f"h-{i}"))
    batch, done = acks.gather()
    assert (len(batch), done) == (10, False)
    assert [m.receipt_handle for m in acks.gather()[0]] == ["h-10", "h-11"]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def acks_at(clock: Clock, *gaps: float, interval: float = 0.5) -> AckBatcher:
    """An ack batcher that was given one ack, then one more after each gap."""
    acks = gathering(linger_seconds=0.02, interval_seconds=interval, clock=clock)
    acks.put(message("h-0"))
    for i, gap in enumerate(gaps, 1):
        clock.now += gap
        acks.put(message(f"h-{i}"))
    return acks


def test_a_steady_stream_of_acks_waits_for_the_next_one_up_to_the_interval() -> None:
    clock = Clock()
    acks = acks_at(clock, 0.1, 0.1)  # ten a second
    opened = clock.now
    clock.now += 0.05
    # The next is due about 0.1 s after the last: wait for it, up to 3 gaps.
    assert acks._wait(opened) == pytest.approx(0.25)
    clock.now = opened + 0.35
    assert acks._wait(opened) <= 0  # three gaps without an ack: the stream paused
    # A batch opened at the first of a stream that keeps coming closes at the interval.
    clock = Clock()
    opened = clock.now
    acks = acks_at(clock, 0.1, 0.1, 0.1, 0.1)
    clock.now += 0.05
    assert acks._wait(opened) == pytest.approx(0.05)
    clock.now = opened + 0.5
    assert acks._wait(opened) == pytest.approx(0, abs=1e-9)


def test_the_last_acks_of_a_burst_and_a_stop_do_not_wait() -> None:
    clock = Clock()
    acks = acks_at(clock, 0.001, 0.001, 0.001)  # a backlog drained a thousand a second
    opened = clock.now
    clock.now += 0.01  # three gaps have gone by with nothing: the burst is over
    assert acks._wait(opened) <= 0
    steady = acks_at(Clock(), 0.1, 0.1)
    steady.stopping.set()
    assert steady._wait(steady.clock()) == 0


def test_without_an_interval_only_messages_in_hand_are_waited_for() -> None:
    clock = Clock()
    acks = acks_at(clock, 0.1, 0.1, interval=0)
    assert acks._wait(clock.now) <= 0


@pytest.fixture
def policy(sqs: SQSClient) -> tuple[Retries, Recorder, list[Message], str]:
    url = queue_with_dlq(sqs, "policy", max_receives=2)
    capacity, recorder = Capacity(limit=20), Recorder()
    hooks = Hooks([recorder])
    acked: list[Message] = []
    retries = Retries(
        sqs,
        url,
        backoff_base=5,
        backoff_cap=60,
        max_receive_count=None,
        visibility=Visibility(sqs, url, capacity, hooks),
        hooks=hooks,
        ack=acked.append,
    )
    retries.load(threading.Event())
    return retries, recorder, acked, url


def test_policy_reads_the_redrive_policy(
    policy: tuple[Retries, Recorder, list[Message], str],
) -> None:
    retries, _, _, _ = policy
    assert retries.max_receives == 2
    assert retries.dlq_url is not None
    assert retries.dlq_url.endswith("/policy-dlq")


def test_policy_dead_letters_poison_at_once_with_the_reason(
    sqs: SQSClient, policy: tuple[Retries, Recorder, list[Message], str]
) -> None:
    retries, recorder, acked, url = policy
    (poison,) = receive(sqs, url, 1)
    retries.after_failure(poison, PoisonMessage("not JSON"))
    assert recorder.calls == [("dead_letter", ("m-0", "poison: not JSON"))]
    assert acked == [poison]
    assert retries.dlq_url is not None
    dead = sqs.receive_message(QueueUrl=retries.dlq_url, MessageAttributeNames=["All"])
    reason = dead["Messages"][0]["MessageAttributes"]["dead_letter_reason"]["StringValue"]
    assert reason == "poison: not JSON"


def test_policy_retries_later_after_the_delay_asked_for_or_the_backoff(
    sqs: SQSClient, policy: tuple[Retries, Recorder, list[Message], str]
) -> None:
    retries, recorder, acked, url = policy
    first, second = receive(sqs, url, 2)
    retries.after_failure(first, RetryLater("busy", delay=7))
    retries.after_failure(second, RetryLater("busy"))
    assert recorder.calls == [("retry", ("m-0", 7, "busy")), ("retry", ("m-1", 5, "busy"))]
    assert acked == []


def test_policy_backs_off_until_max_receives_then_dead_letters(
    sqs: SQSClient, policy: tuple[Retries, Recorder, list[Message], str]
) -> None:
    retries, recorder, acked, url = policy
    (failing,) = receive(sqs, url, 1)
    retries.after_failure(failing, ValueError("wrong"))
    assert recorder.calls == [("retry", ("m-0", 5, "ValueError: wrong"))]
    # Its second delivery (the receipt handle is still valid) fails too: that is the last.
    failing.attributes["ApproximateReceiveCount"] = "2"
    retries.after_failure(failing, ValueError("wrong"))
    assert recorder.calls[-1] == ("dead_letter", ("m-0", "failed 2 times: ValueError: wrong"))
    assert acked == [failing]


def test_poller_receives_into_the_capacity_and_delivers(sqs: SQSClient) -> None:
    url = sqs.create_queue(QueueName="poll")["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m-{i}")
    capacity, stats, stopping = Capacity(limit=20), ConsumerStats(), threading.Event()
    hooks = Hooks([stats])
    delivered: list[Message] = []
    poller = Poller(
        sqs,
        url,
        batch_size=10,
        wait_seconds=0,
        visibility_timeout=30,
        capacity=capacity,
        visibility=Visibility(sqs, url, capacity, hooks),
        hooks=hooks,
        deliver=delivered.append,
        stopping=stopping,
    )
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while len(delivered) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stopping.set()
    capacity.wake()
    thread.join(5)
    assert not thread.is_alive()
    assert sorted(m.body for m in delivered) == ["m-0", "m-1", "m-2"]
    assert (stats.received, capacity.in_hand()) == (3, 3)
