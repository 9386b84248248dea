"""`pubsub status` and `pubsub publish-sample --direct` against moto's mock AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.emulator import free_port
from pubsub_ops import cli
from pubsub_supervisor.provision import provision
from pubsub_supervisor.settings import Settings


@pytest.fixture
def aws(aws_env: None, settings: Settings) -> Iterator[Any]:
    """Mock AWS with the topology applied; yields its SQS client."""
    with mock_aws():
        provision(settings)
        yield boto3.client("sqs", region_name="us-east-1")


def test_status_prints_a_row_per_queue(
    aws: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    url = aws.get_queue_url(QueueName="pubsub-email")["QueueUrl"]
    aws.send_message(QueueUrl=url, MessageBody="{}")

    assert cli.main(["status"], settings) == cli.EXIT_OK

    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["pubsub-email"][1:] == ["email", "1", "0", "0", "pubsub-email-dlq", "0"]
    assert set(rows) >= {"pubsub-inventory", "pubsub-analytics", "pubsub-web"}
    assert lines[-1] == "Dead-letter queues are empty."


def test_status_check_fails_while_a_dlq_holds_messages(
    aws: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--check"], settings) == cli.EXIT_OK
    url = aws.get_queue_url(QueueName="pubsub-analytics-dlq")["QueueUrl"]
    aws.send_message(QueueUrl=url, MessageBody="{}")

    assert cli.main(["status"], settings) == cli.EXIT_OK
    assert cli.main(["status", "--check"], settings) == cli.EXIT_DEAD_LETTERS
    assert "1 message(s) in dead-letter queues" in capsys.readouterr().out


def test_direct_sample_reaches_every_service_queue(
    aws: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["publish-sample", "--direct", "--email", "d@example.com"], settings) == 0

    out = capsys.readouterr().out
    order_id = out.split("order id:")[1].split()[0]
    for queue in ("pubsub-email", "pubsub-inventory", "pubsub-analytics"):
        url = aws.get_queue_url(QueueName=queue)["QueueUrl"]
        messages = aws.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
        event = json.loads(messages[0]["Body"])
        assert event["event_type"] == "order.created"
        assert event["order_id"] == order_id
        assert event["customer_email"] == "d@example.com"
        assert [i["sku"] for i in event["items"]] == list(cli.SAMPLE_SKUS)
        # The W3C trace context: its trace id is the one printed and in the body.
        traceparent = messages[0]["MessageAttributes"]["traceparent"]["StringValue"]
        assert traceparent.split("-")[1] == event["trace_id"]


def test_sample_through_an_absent_web_fails_with_a_hint(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["publish-sample", "--url", url], settings) == cli.EXIT_FAILED
    assert f"the web at {url} did not answer" in capsys.readouterr().err


def test_emulator_needs_no_keys_in_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an emulator endpoint and no keys anywhere boto3 looks (only .env names them).
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # a regression stays on this host
    nowhere = f"http://127.0.0.1:{free_port()}"
    emulator = settings.model_copy(update={"aws_endpoint_url": nowhere})

    # When status runs, it gets as far as the endpoint (nothing listens there).
    assert cli.main(["status"], emulator) == cli.EXIT_FAILED

    err = capsys.readouterr().err
    assert f"failed against {nowhere}" in err
    assert "credentials" not in err
