"""The dashboard, the DLQ page and /metrics, with SQS from moto's mock AWS."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from flask import Flask
from flask.testing import FlaskClient
from moto import mock_aws
from prometheus_client.parser import text_string_to_metric_families

from devtools.emulator import free_port
from pubsub_supervisor.provision import provision
from pubsub_supervisor.settings import Settings
from web import create_app
from web.pages import DLQ_PAGE

ORDER = {"customer_email": "ada@example.com", "items": [{"sku": "KB-001", "quantity": 2}]}


@pytest.fixture
def sqs(aws_env: None, settings: Settings) -> Iterator[Any]:
    with mock_aws():
        provision(settings)
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def app(sqs: Any, operator_settings: Settings) -> Iterator[Flask]:
    # Operator routes need the operator's credentials; `client` sends them.
    # Nothing publishes here, so the orders posted stay in the outbox backlog.
    app = create_app(operator_settings.model_copy(update={"outbox_publish_on_commit": False}))
    yield app
    app.extensions["pubsub"].close()


def url(sqs: Any, name: str) -> str:
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


def test_pipeline_json_has_depths_backlog_and_charts(sqs: Any, client: FlaskClient) -> None:
    sqs.send_message(QueueUrl=url(sqs, "pubsub-inventory"), MessageBody="{}")
    sqs.send_message(QueueUrl=url(sqs, "pubsub-web-dlq"), MessageBody="{}")
    client.post("/api/orders", json=ORDER)

    state = client.get("/api/pipeline").get_json()

    assert state["queues_error"] is None
    depths = {q["name"]: q["depth"] for q in state["queues"]}
    assert list(depths) == [
        "pubsub-email",
        "pubsub-inventory",
        "pubsub-analytics",
        "pubsub-web",
        "pubsub-email-sends",
    ]
    assert depths["pubsub-inventory"]["visible"] == 1
    assert depths["pubsub-web"]["dlq_visible"] == 1
    assert state["outbox_backlog"] == 1  # no relay runs here
    assert state["analytics"]["orders"] == 0
    assert state["charts"]["orders_per_minute"]["empty"] is True
    assert len(state["charts"]["orders_per_minute"]["bars"]) == 30


def test_dashboard_page_shows_every_queue(client: FlaskClient) -> None:
    html = client.get("/pipeline").text
    for name in ("pubsub-email", "pubsub-inventory", "pubsub-analytics", "pubsub-web"):
        assert f'data-queue="{name}"' in html
    assert '<svg viewBox="0 0 560 220"' in html
    assert 'id="queues-error" hidden' in html


def test_dashboard_says_when_sqs_does_not_answer(settings: Settings) -> None:
    nowhere = settings.model_copy(update={"aws_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    app = create_app(nowhere)
    try:
        response = app.test_client().get("/pipeline")
    finally:
        app.extensions["pubsub"].close()
    assert response.status_code == 200
    assert re.search(r'id="queues-error">SQS did not answer: .+</p>', response.text)


def test_metrics_include_depths_read_on_scrape(sqs: Any, client: FlaskClient) -> None:
    sqs.send_message(QueueUrl=url(sqs, "pubsub-email-dlq"), MessageBody="{}")
    client.post("/api/orders", json=ORDER)

    text = client.get("/metrics").text

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    dlq = (
        "pubsub_queue_messages",
        (("program", "pubsub"), ("queue", "pubsub-email-dlq"), ("state", "visible")),
    )
    assert samples[dlq] == 1
    assert samples[("pubsub_outbox_backlog", (("program", "pubsub"),))] == 1
    assert samples[("pubsub_sqs_up", (("program", "pubsub"),))] == 1
    created = (
        ("endpoint", "/api/orders"),
        ("method", "POST"),
        ("program", "pubsub"),
        ("status", "201"),
    )
    assert samples[("pubsub_http_requests_total", created)] >= 1


def test_dlq_page_lists_and_redrives_a_message(sqs: Any, client: FlaskClient) -> None:
    sent = sqs.send_message(
        QueueUrl=url(sqs, "pubsub-email-dlq"),
        MessageBody='{"event_type": "order.created", "order_id": "abc123"}',
        MessageAttributes={
            "dead_letter_reason": {"DataType": "String", "StringValue": "poison: no such SKU"}
        },
    )["MessageId"]

    page = client.get("/dlq").text
    assert f'data-message-id="{sent}"' in page
    assert "poison: no such SKU" in page
    assert 'href="/orders/abc123"' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token

    response = client.post(
        "/dlq/redrive",
        data={"csrf_token": token.group(1), "dlq": "pubsub-email-dlq", "message_id": sent},
        follow_redirects=True,
    )

    assert "Redrove 1 message from pubsub-email-dlq" in response.text
    assert f'data-message-id="{sent}"' not in response.text
    moved = sqs.receive_message(QueueUrl=url(sqs, "pubsub-email"))["Messages"]
    assert moved[0]["Body"] == '{"event_type": "order.created", "order_id": "abc123"}'


def test_redrive_refuses_other_queues_and_missing_tokens(client: FlaskClient) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert token
    refused = client.post(
        "/dlq/redrive", data={"csrf_token": token.group(1), "dlq": "pubsub-email"}
    )
    assert refused.status_code == 400
    assert client.post("/dlq/redrive", data={"dlq": "pubsub-email-dlq"}).status_code == 400


def test_dlq_page_shows_one_page_and_says_there_are_more(sqs: Any, client: FlaskClient) -> None:
    for start in range(0, 50, 10):
        sqs.send_message_batch(
            QueueUrl=url(sqs, "pubsub-email-dlq"),
            Entries=[
                {"Id": str(n), "MessageBody": f'{{"n": {n}}}'} for n in range(start, start + 10)
            ],
        )
    first = client.get("/dlq").text
    shown = set(re.findall(r'data-message-id="([^"]+)"', first))
    assert len(shown) == DLQ_PAGE
    assert f"{DLQ_PAGE} shown, more in the queue (approximate count 50)" in first
    # Released after the read: the next reader sees a full page again.
    again = set(re.findall(r'data-message-id="([^"]+)"', client.get("/dlq").text))
    assert len(again) == DLQ_PAGE
