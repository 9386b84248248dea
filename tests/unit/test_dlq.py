"""DLQ tooling on moto: listing with reasons, redrive, and the `pubsub dlq` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from pubsub_ops import cli
from pubsub_supervisor import dlq
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import QueueSpec

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.usefixtures("aws_env")

ORDER_BODY = json.dumps(
    {"event_type": "order.created", "schema_version": 1, "order_id": "o-1", "event_id": "e-1"}
)


@pytest.fixture
def env_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings `pubsub` reads: no endpoint (moto intercepts), no .env."""
    monkeypatch.setenv("ENV_FILE", "")
    monkeypatch.setenv("RESOURCE_PREFIX", "t")
    return Settings(_env_file=None, resource_prefix="t")  # type: ignore[call-arg]


@pytest.fixture
def sqs(env_settings: Settings) -> Iterator[SQSClient]:
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        for spec in env_settings.topology.queues:
            client.create_queue(QueueName=spec.name)
            client.create_queue(QueueName=spec.dlq_name)
        yield client


@pytest.fixture
def email_queue(env_settings: Settings) -> QueueSpec:
    return env_settings.topology.queue_for("email")


def url(sqs: SQSClient, name: str) -> str:
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]


def dead_letter(sqs: SQSClient, spec: QueueSpec, body: str, reason: str | None) -> None:
    """Put a message in the DLQ as the runtime does (or, with no reason, as SQS does)."""
    attributes: dict[str, Any] = {
        "event_id": {"DataType": "String", "StringValue": "e-1"},
        "event_type": {"DataType": "String", "StringValue": "order.created"},
    }
    if reason is not None:
        attributes |= {
            "dead_letter_reason": {"DataType": "String", "StringValue": reason},
            "source_queue": {"DataType": "String", "StringValue": spec.name},
            "receive_count": {"DataType": "Number", "StringValue": "5"},
        }
    sqs.send_message(
        QueueUrl=url(sqs, spec.dlq_name), MessageBody=body, MessageAttributes=attributes
    )


def visible(sqs: SQSClient, name: str) -> list[Any]:
    return list(
        sqs.receive_message(
            QueueUrl=url(sqs, name),
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
    )


def test_list_shows_reason_order_and_leaves_messages_in_place(
    sqs: SQSClient, email_queue: QueueSpec
) -> None:
    dead_letter(sqs, email_queue, ORDER_BODY, "failed 5 times: MessageRejected: not verified")
    dead_letter(sqs, email_queue, "{broken", None)
    found = dlq.list_dead_letters(sqs, email_queue).letters
    by_reason = {d.reason: d for d in found}
    assert set(by_reason) == {"failed 5 times: MessageRejected: not verified", dlq.NO_REASON}
    first = by_reason["failed 5 times: MessageRejected: not verified"]
    assert (first.order_id, first.event_type, first.receive_count) == ("o-1", "order.created", 5)
    assert by_reason[dlq.NO_REASON].order_id is None
    # Listing removes nothing and leaves them visible.
    assert len(visible(sqs, email_queue.dlq_name)) == 2


def test_redrive_moves_messages_back_with_their_original_attributes(
    sqs: SQSClient, email_queue: QueueSpec
) -> None:
    dead_letter(sqs, email_queue, ORDER_BODY, "failed 5 times: boom")
    result = dlq.redrive(sqs, email_queue)
    assert (result.moved, result.failed, result.skipped) == (1, 0, 0)
    assert visible(sqs, email_queue.dlq_name) == []
    [back] = visible(sqs, email_queue.name)
    assert back["Body"] == ORDER_BODY
    assert {k: v["StringValue"] for k, v in back["MessageAttributes"].items()} == {
        "event_id": "e-1",
        "event_type": "order.created",
    }


def test_redrive_leaves_messages_that_arrive_while_it_runs(
    sqs: SQSClient, email_queue: QueueSpec
) -> None:
    dead_letter(sqs, email_queue, ORDER_BODY, "failed again")
    # As if the redrive had begun before this message was dead-lettered.
    result = dlq.redrive(sqs, email_queue, now_ms=lambda: 0)
    assert (result.moved, result.skipped) == (0, 1)
    assert len(visible(sqs, email_queue.dlq_name)) == 1


def test_cli_list_and_redrive(
    sqs: SQSClient, email_queue: QueueSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter(sqs, email_queue, ORDER_BODY, "failed 5 times: boom")
    assert cli.main(["dlq", "list"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "t-email-dlq: 1 message(s), from t-email" in out
    assert "reason: failed 5 times: boom" in out
    assert "order o-1" in out
    assert "t-inventory-dlq: empty" in out
    assert cli.main(["dlq", "list", "--json", "--queue", "email"]) == cli.EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    assert [d["reason"] for d in listed["t-email-dlq"]] == ["failed 5 times: boom"]
    assert cli.main(["dlq", "redrive", "--queue", "t-email-dlq"]) == cli.EXIT_OK
    assert "t-email-dlq -> t-email: moved 1" in capsys.readouterr().out
    assert len(visible(sqs, email_queue.name)) == 1


def test_cli_unknown_queue_is_a_usage_error(
    sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dlq", "redrive", "--queue", "nope"]) == cli.EXIT_CONFIG
    assert "no queue named 'nope'; valid names: t-email" in capsys.readouterr().err


def test_cli_failure_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    # No mock and no queues: the call fails, and the command says so.
    with mock_aws():
        assert cli.main(["dlq", "list"]) == cli.EXIT_FAILED
    assert "pubsub dlq: failed against AWS" in capsys.readouterr().err


def test_redrive_of_chosen_messages_leaves_the_others(
    sqs: SQSClient, email_queue: QueueSpec
) -> None:
    for n in range(3):
        dead_letter(sqs, email_queue, json.dumps({"n": n}), f"failed: {n}")
    listed = {json.loads(d.body)["n"]: d for d in dlq.list_dead_letters(sqs, email_queue).letters}

    result = dlq.redrive(sqs, email_queue, message_ids={listed[1].message_id})

    assert (result.moved, result.failed, result.skipped) == (1, 0, 0)
    assert [json.loads(m["Body"]) for m in visible(sqs, email_queue.name)] == [{"n": 1}]
    left = sorted(json.loads(m["Body"])["n"] for m in visible(sqs, email_queue.dlq_name))
    assert left == [0, 2]


def fill(sqs: SQSClient, spec: QueueSpec, count: int) -> None:
    """Put `count` dead letters in the queue's DLQ, ten per call."""
    for start in range(0, count, 10):
        sqs.send_message_batch(
            QueueUrl=url(sqs, spec.dlq_name),
            Entries=[
                {"Id": str(n), "MessageBody": json.dumps({"n": n})}
                for n in range(start, min(start + 10, count))
            ],
        )


class Counting:
    """Counts the SQS calls a read makes (the client is moto's, untouched otherwise)."""

    def __init__(self, sqs: SQSClient) -> None:
        self.calls: list[str] = []
        sqs.meta.events.register("before-call.sqs", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)


def test_a_listing_reads_one_page_in_bounded_calls_and_releases_it(
    sqs: SQSClient, email_queue: QueueSpec
) -> None:
    fill(sqs, email_queue, 200)
    counting = Counting(sqs)

    page = dlq.list_dead_letters(sqs, email_queue, limit=20)

    assert len(page.letters) == 20
    assert len({d.message_id for d in page.letters}) == 20
    assert page.more
    assert page.approximate_count == 200
    receives = counting.calls.count("ReceiveMessage")
    assert receives <= 3 + dlq.SPARE_RECEIVES
    assert len(counting.calls) <= receives + 6
    # Released at once: every message is visible again, for the next reader and a redrive.
    attrs = sqs.get_queue_attributes(
        QueueUrl=url(sqs, email_queue.dlq_name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert (
        attrs["ApproximateNumberOfMessages"],
        attrs["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "200",
        "0",
    )


def test_a_listing_of_a_small_dlq_shows_all_and_no_more(
    sqs: SQSClient, email_queue: QueueSpec
) -> None:
    fill(sqs, email_queue, 20)
    page = dlq.list_dead_letters(sqs, email_queue, limit=20)
    assert sorted(json.loads(d.body)["n"] for d in page.letters) == list(range(20))
    assert not page.more
    assert dlq.list_dead_letters(sqs, email_queue, limit=5).more


def test_a_listing_lists_a_message_once_even_if_it_comes_back(
    sqs: SQSClient, email_queue: QueueSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(sqs, email_queue, 3)
    # No hold at all: every receive meets the same three messages again.
    monkeypatch.setattr(dlq, "HOLD_SECONDS", 0)
    counting = Counting(sqs)
    page = dlq.list_dead_letters(sqs, email_queue, limit=20)
    assert sorted(json.loads(d.body)["n"] for d in page.letters) == [0, 1, 2]
    assert counting.calls.count("ReceiveMessage") <= 3 + dlq.SPARE_RECEIVES


def test_redrive_of_all_moves_a_large_dlq_and_of_one_finds_it(
    sqs: SQSClient, email_queue: QueueSpec
) -> None:
    fill(sqs, email_queue, 200)
    [first] = dlq.list_dead_letters(sqs, email_queue, limit=1).letters
    assert dlq.redrive(sqs, email_queue, message_ids={first.message_id}).moved == 1
    result = dlq.redrive(sqs, email_queue)
    assert (result.moved, result.failed, result.skipped) == (199, 0, 0)
    assert visible(sqs, email_queue.dlq_name) == []


def test_cli_list_says_when_there_are_more(
    sqs: SQSClient, email_queue: QueueSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(sqs, email_queue, 30)
    assert cli.main(["dlq", "list", "--queue", "email", "--limit", "5"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "t-email-dlq: 5 message(s), from t-email" in out
    assert "5 shown, more in the queue (approximate count 30)" in out
    with pytest.raises(SystemExit):
        cli.main(["dlq", "list", "--limit", "0"])
