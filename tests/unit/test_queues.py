"""Queue depths (against moto's mock SQS)."""

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

    assert list(depths) == ["t-email", "t-inventory", "t-web", "t-email-sends"]
    assert (depths["t-email"].visible, depths["t-email"].in_flight) == (2, 1)
    assert depths["t-email"].dlq_visible == 0
    assert depths["t-inventory"].dlq_visible == 1
    assert depths["t-inventory"].dlq_name == "t-inventory-dlq"
    assert depths["t-web"].consumer == "web"
