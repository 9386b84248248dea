"""Traces in one process, exported to the SDK's in-memory exporter: the request's span,
the context stored with the outbox row, the relay's publish, a message's handling."""

from __future__ import annotations

import io
import json
import logging
import threading
from typing import Any

import boto3
import pytest
from moto import mock_aws
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from sqlalchemy import select

from pubsub_supervisor import logs, tracing
from pubsub_supervisor.publish_batcher import PublishBatcher
from pubsub_supervisor.runtime import Message
from pubsub_supervisor.runtime.middleware import Hooks
from pubsub_supervisor.runtime.retries import Retries
from pubsub_supervisor.settings import Settings
from tests.unit.conftest import SPANS
from web import create_app, get_context
from web.outbox import OutboxRelay
from web.schema import outbox

ORDER = {"customer_email": "ada@example.com", "items": [{"sku": "KB-001", "quantity": 1}]}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The spans recorded in this test."""
    tracing.init("unit")
    return SPANS


def named(exporter: InMemorySpanExporter, suffix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.endswith(suffix)]


def raw_copies(sns: Any, sqs: Any, name: str) -> tuple[str, str]:
    """A topic `name` and a queue receiving its messages raw: (topic ARN, queue URL)."""
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{name}-copies")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    return topic, queue


def stored_attributes(app: Any) -> dict[str, Any]:
    with app.app_context():
        engine = get_context().engine
    with engine.connect() as conn:
        row = conn.execute(select(outbox.c.attributes)).scalar_one()
    attributes: dict[str, Any] = json.loads(row)
    return attributes


def test_an_order_request_starts_a_trace_stored_with_its_event(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    app = create_app(settings)
    response = app.test_client().post("/api/orders", json=ORDER)
    assert response.status_code == 201
    (request,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    trace_id = format_trace_id(request.context.trace_id)
    # One id everywhere: the response header, the order, the stored trace context.
    assert response.headers["X-Trace-Id"] == trace_id
    assert response.get_json()["trace_id"] == trace_id
    traceparent = stored_attributes(app)["traceparent"]["StringValue"]
    assert traceparent.split("-")[1] == trace_id
    # The store's queries are spans of the same trace.
    queries = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert queries
    assert {s.context.trace_id for s in queries} == {request.context.trace_id}
    app.extensions["pubsub"].close()


def test_a_callers_traceparent_is_continued(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    app = create_app(settings)
    response = app.test_client().post(
        "/api/orders", json=ORDER, headers={"traceparent": f"00-{TRACE}-{CALLER}-01"}
    )
    assert response.headers["X-Trace-Id"] == TRACE
    (request,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert request.parent is not None
    assert format_span_id(request.parent.span_id) == CALLER
    app.extensions["pubsub"].close()


def test_probes_start_no_trace(settings: Settings, spans: InMemorySpanExporter) -> None:
    app = create_app(settings)
    assert app.test_client().get("/healthz").status_code == 200
    assert spans.get_finished_spans() == ()
    app.extensions["pubsub"].close()


@pytest.mark.usefixtures("aws_env")
def test_the_relay_publishes_each_event_in_its_own_trace(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    # The relay's path: the web does not publish on commit here.
    app = create_app(settings.model_copy(update={"outbox_publish_on_commit": False}))
    client = app.test_client()
    traces = [f"{n:032x}" for n in range(1, 4)]
    for trace_id in traces:
        client.post(
            "/api/orders", json=ORDER, headers={"traceparent": f"00-{trace_id}-{CALLER}-01"}
        )
    with app.app_context():
        engine = get_context().engine
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic, queue = raw_copies(sns, sqs, "orders")
        spans.clear()
        assert OutboxRelay(engine, sns, {"order_events": topic}).relay_once() == 3
        received = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )["Messages"]
    publishes = named(spans, "orders publish")
    # One producer span per event, in the trace of the request that stored it; no
    # botocore span for the batch (it would put one context into every entry).
    assert sorted(format_trace_id(s.context.trace_id) for s in publishes) == traces
    assert all(s.kind is SpanKind.PRODUCER for s in publishes)
    assert not named(spans, "PublishBatch")
    by_span = {format_span_id(s.context.span_id): s for s in publishes}
    for raw in received:
        message = Message.from_sqs(raw)
        # Raw delivery: the SNS attributes are the SQS message's; the context is the
        # publish span's.
        _, trace_id, span_id, _ = message.message_attributes["traceparent"].split("-")
        assert format_trace_id(by_span[span_id].context.trace_id) == trace_id
        assert message.trace_id == trace_id
        assert len(raw["MessageAttributes"]) <= 10
    app.extensions["pubsub"].close()


def test_a_messages_handling_continues_its_trace_and_logs_its_id(
    spans: InMemorySpanExporter,
) -> None:
    message = Message(
        message_id="m-1",
        receipt_handle="r-1",
        body="{}",
        message_attributes={"traceparent": f"00-{TRACE}-{CALLER}-01"},
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter("unit"))
    logger = logging.getLogger("tests.tracing")
    logger.addHandler(handler)
    try:
        with tracing.consuming(message, "pubsub-email"):
            logger.warning("handled")
    finally:
        logger.removeHandler(handler)
    (span,) = named(spans, "pubsub-email process")
    assert span.kind is SpanKind.CONSUMER
    assert format_trace_id(span.context.trace_id) == TRACE
    assert span.parent is not None
    assert format_span_id(span.parent.span_id) == CALLER
    assert json.loads(stream.getvalue())["trace_id"] == TRACE


def test_background_calls_start_no_trace(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("SQS.ReceiveMessage", kind=SpanKind.CLIENT):
        pass
    with (
        tracer.start_as_current_span("queue process", kind=SpanKind.CONSUMER),
        tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT),
    ):
        pass
    assert sorted(s.name for s in spans.get_finished_spans()) == ["SELECT", "queue process"]


def test_a_dead_letter_keeps_the_trace_context_inside_the_attribute_limit() -> None:
    sent: list[dict[str, Any]] = []

    class Sqs:
        def send_message(self, **kwargs: Any) -> None:
            sent.append(kwargs)

    retries = Retries(
        Sqs(),  # type: ignore[arg-type]
        "https://sqs/1/pubsub-email",
        backoff_base=1,
        backoff_cap=10,
        max_receive_count=5,
        visibility=None,  # type: ignore[arg-type]
        hooks=Hooks(()),
        ack=lambda _m: None,
    )
    retries.dlq_url = "https://sqs/1/pubsub-email-dlq"
    attributes = {f"extra_{n}": "x" for n in range(8)}
    attributes.update(
        event_id="e", event_type="order.created", traceparent=f"00-{TRACE}-{CALLER}-01"
    )
    message = Message("m", "r", "{}", message_attributes=attributes)
    retries.dead_letter(message, "poison: test")
    (call,) = sent
    assert len(call["MessageAttributes"]) == 10
    assert call["MessageAttributes"]["traceparent"]["StringValue"].split("-")[1] == TRACE
    assert "dead_letter_reason" in call["MessageAttributes"]


@pytest.mark.parametrize(
    ("env", "exporting"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_spans_leave_the_process_only_with_an_endpoint(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], exporting: bool
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.exporting() is exporting


def test_without_an_endpoint_nothing_is_recorded_but_ids_still_travel() -> None:
    # What init sets up with no endpoint: the ids of an unrecorded span still reach the
    # logs and the messages.
    provider = TracerProvider(sampler=ALWAYS_OFF)
    with provider.get_tracer("tests").start_as_current_span("POST", kind=SpanKind.SERVER) as span:
        assert not span.is_recording()
        assert span.get_span_context().is_valid
        attributes = tracing.with_context({})
    trace_id = format_trace_id(span.get_span_context().trace_id)
    assert attributes["traceparent"]["StringValue"].split("-")[1] == trace_id
    assert tracing.stored_trace_id(attributes) == trace_id


@pytest.mark.usefixtures("aws_env")
def test_results_sharing_one_batch_each_keep_their_handlers_trace(
    spans: InMemorySpanExporter,
) -> None:
    tracer = trace.get_tracer("test")
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic, queue = raw_copies(sns, sqs, "results")
        # Three handlers publish at once; more_coming keeps the batch open for all three.
        batcher = PublishBatcher(sns, topic, linger_seconds=2.0, more_coming=lambda n: n < 3)
        handled: list[str] = []

        def handle(n: int) -> None:
            # As the consumer's span for a message is.
            with tracer.start_as_current_span(f"handle {n}", kind=SpanKind.CONSUMER) as span:
                handled.append(format_trace_id(span.get_span_context().trace_id))
                batcher.publish(json.dumps({"n": n}), {})

        threads = [threading.Thread(target=handle, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        received = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )["Messages"]
    carried = [m["MessageAttributes"]["traceparent"]["StringValue"] for m in received]
    assert sorted(value.split("-")[1] for value in carried) == sorted(handled)
    publishes = named(spans, "results publish")
    assert sorted(format_trace_id(s.context.trace_id) for s in publishes) == sorted(handled)
