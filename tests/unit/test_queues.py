"""Queue depths, DLQ reads and redrives (against moto's mock SQS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pubsub_supervisor.queues import QueueReader
from pubsub_supervisor.topology import Arns, Topology, apply_topology, build_topology

ARNS = Arns(account="123456789012", region="us-east-1")


@pytest.fixture
def topology() -> Topology:
    return build_topology(prefix="t", services=("email", "inventory"))


@pytest.fixture
def sqs(aws_env: None, topology: Topology) -> Iterator[Any]:
    with mock_aws():
        clients: dict[str, Any] = {
            n: boto3.client(n, region_name="us-east-1") for n in ("sns", "sqs", "ses")
        }
        apply_topology(topology, **clients, arns=ARNS)
        yield clients["sqs"]


def dead_letter(sqs: Any, dlq: str, body: str, event_id: str) -> str:
    url = sqs.get_queue_url(QueueName=dlq)["QueueUrl"]
    return str(
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={
                "event_id": {"DataType": "String", "StringValue": event_id},
                "trace_id": {"DataType": "String", "StringValue": "trace-" + event_id},
                "dead_letter_reason": {"DataType": "String", "StringValue": "poison: bad"},
                "receive_count": {"DataType": "Number", "StringValue": "5"},
            },
        )["MessageId"]
    )


def received(sqs: Any, queue: str) -> list[dict[str, Any]]:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    return list(
        sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
    )


def test_depths_count_each_queue_and_its_dlq(sqs: Any, topology: Topology) -> None:
    url = sqs.get_queue_url(QueueName="t-email")["QueueUrl"]
    for _ in range(3):
        sqs.send_message(QueueUrl=url, MessageBody="{}")
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    dead_letter(sqs, "t-inventory-dlq", "{}", "e1")

    depths = {d.name: d for d in QueueReader(sqs, topology).depths()}

    assert list(depths) == ["t-email", "t-inventory", "t-web"]
    assert (depths["t-email"].visible, depths["t-email"].in_flight) == (2, 1)
    assert depths["t-email"].dlq_visible == 0
    assert depths["t-inventory"].dlq_visible == 1
    assert depths["t-inventory"].dlq_name == "t-inventory-dlq"
    assert depths["t-web"].consumer == "web"


def test_peek_shows_the_reason_and_leaves_the_messages(sqs: Any, topology: Topology) -> None:
    body = '{"event_type": "order.created", "order_id": "o1"}'
    first = dead_letter(sqs, "t-email-dlq", body, "e1")
    dead_letter(sqs, "t-email-dlq", "not json", "e2")
    reader = QueueReader(sqs, topology)

    letters = reader.peek("t-email-dlq")
    again = reader.peek("t-email-dlq")

    assert {d.message_id for d in letters} == {d.message_id for d in again}
    assert len(letters) == 2
    one = next(d for d in letters if d.message_id == first)
    assert one.reason == "poison: bad"
    assert one.receive_count == 5
    assert one.event == {"event_type": "order.created", "order_id": "o1"}
    assert next(d for d in letters if d.message_id != first).event == {}


def test_redrive_one_message_keeps_its_ids_and_leaves_the_rest(
    sqs: Any, topology: Topology
) -> None:
    chosen = dead_letter(sqs, "t-email-dlq", '{"n": 1}', "e1")
    dead_letter(sqs, "t-email-dlq", '{"n": 2}', "e2")
    reader = QueueReader(sqs, topology)

    assert reader.redrive("t-email-dlq", [chosen]) == 1

    moved = received(sqs, "t-email")
    assert [m["Body"] for m in moved] == ['{"n": 1}']
    attributes = {k: v["StringValue"] for k, v in moved[0]["MessageAttributes"].items()}
    assert attributes == {"event_id": "e1", "trace_id": "trace-e1"}
    assert [d.body for d in reader.peek("t-email-dlq")] == ['{"n": 2}']


def test_redrive_all_empties_the_dlq(sqs: Any, topology: Topology) -> None:
    for i in range(13):
        dead_letter(sqs, "t-inventory-dlq", f'{{"n": {i}}}', f"e{i}")
    reader = QueueReader(sqs, topology)

    assert reader.redrive("t-inventory-dlq") == 13

    assert reader.peek("t-inventory-dlq") == []
    depth = next(d for d in reader.depths() if d.name == "t-inventory")
    assert depth.visible == 13


def test_only_the_topology_dlqs_can_be_redriven(sqs: Any, topology: Topology) -> None:
    with pytest.raises(KeyError, match="t-email is not a dead-letter queue"):
        QueueReader(sqs, topology).redrive("t-email")
