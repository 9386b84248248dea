"""OpenTelemetry traces: one trace per order, from the HTTP request through SNS and SQS.

The instrumentations (Flask, botocore, SQLAlchemy) make most spans and botocore puts the
W3C trace context into what the services publish. What they lack is here: the context
stored with an outbox row and carried by each entry of the relay's batch, and the context
taken from a received SQS message (raw delivery: SNS message attributes arrive as SQS
message attributes) around its handling.

`init` runs once per process (the program runner, the web's factory). Spans are recorded
and exported only when an OTLP endpoint is configured (the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; the SDK reads every
other `OTEL_*` variable itself). Without one, no span is recorded, but their ids are made
and travel all the same, so every log line of an order carries its W3C trace id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from pubsub_supervisor.runtime.middleware import Middleware

if TYPE_CHECKING:
    from flask import Flask
    from opentelemetry.sdk.trace import TracerProvider

    from pubsub_supervisor.runtime.message import Message

log = logging.getLogger(__name__)

_tracer = trace.get_tracer("pubsub_supervisor")

#: Web paths that start no trace (probes, scrapes, static files) unless
#: OTEL_PYTHON_FLASK_EXCLUDED_URLS says otherwise.
QUIET_PATHS = "healthz,readyz,metrics,static"
#: Longest wait for the last spans to leave when a program stops.
FLUSH_MILLIS = 2000

_provider: TracerProvider | None = None


def init(program: str) -> None:
    """Set up tracing for this process, once: the SDK, the exporter when an endpoint is
    configured, and the botocore and SQLAlchemy instrumentations."""
    global _provider
    if _provider is not None:
        return
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # Set up before us (a test's in-memory exporter): keep it.
        _provider = current
    else:
        # Each program names itself unless OTEL_SERVICE_NAME does (one for all of them).
        name = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: program}
        # Nowhere to send them: record nothing (a span costs its ids, nothing more).
        sampler = EntrySpans(_get_from_env_or_default()) if exporting() else ALWAYS_OFF
        _provider = TracerProvider(resource=Resource.create(name), sampler=sampler)
        if exporting():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            # Its thread starts here, in the process that exports (gunicorn: the worker).
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(_provider)
    BotocoreInstrumentor().instrument()  # type: ignore[no-untyped-call]
    # The instrumentation names SQLAlchemy < 2.1, but hooks only its stable engine events.
    SQLAlchemyInstrumentor().instrument(skip_dep_check=True)
    log.debug("tracing ready", extra={"exporting": exporting()})


def exporting() -> bool:
    """Whether spans leave the process: an OTLP endpoint is set and the SDK is not off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(
        os.environ.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def instrument_app(app: Flask) -> None:
    """A server span per request, continuing an incoming `traceparent`."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    excluded = None if os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS") else QUIET_PATHS
    FlaskInstrumentor().instrument_app(  # type: ignore[no-untyped-call]
        app, excluded_urls=excluded, enable_commenter=False
    )


def flush() -> None:
    """Send the spans still queued (before a program exits without the interpreter's
    teardown, where the SDK would otherwise do it)."""
    if _provider is not None:
        _provider.force_flush(FLUSH_MILLIS)


class EntrySpans(Sampler):
    """Sampler: a trace starts at an entry (a request, a message, a publish), never at a
    database query or an AWS call of a background loop (polls, deletes, idle relay
    scans), which would each be a one-span trace; the rest is the configured sampler's
    decision (OTEL_TRACES_SAMPLER, parent-based by default)."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        """Drop client and internal spans without a parent; otherwise ask the inner sampler."""
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and kind in (SpanKind.CLIENT, SpanKind.INTERNAL, None):
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """What the sampler does, for the SDK's debug output."""
        return f"EntrySpans{{{self.inner.get_description()}}}"


# -- the W3C context in message attributes ---------------------------------------------


class _SnsAttributes(Getter[Mapping[str, Any]], Setter[MutableMapping[str, Any]]):
    """SNS/SQS MessageAttributes as a carrier: {"traceparent": {"StringValue": ...}}."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        text = value.get("StringValue") if isinstance(value, Mapping) else None
        return [text] if isinstance(text, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)

    def set(self, carrier: MutableMapping[str, Any], key: str, value: str) -> None:
        carrier[key] = {"DataType": "String", "StringValue": value}


_ATTRIBUTES = _SnsAttributes()


def with_context(attributes: dict[str, Any]) -> dict[str, Any]:
    """`attributes` (SNS MessageAttributes) plus the current trace context, as stored with
    an outbox row for the relay."""
    propagate.inject(attributes, setter=_ATTRIBUTES)
    return attributes


def current_trace_id() -> str:
    """The current span's W3C trace id (32 hex), else a new random one."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return trace.format_trace_id(span_context.trace_id)
    return secrets.token_hex(16)


def trace_id_in(attributes: Mapping[str, str]) -> str | None:
    """The trace id a received message's attributes carry (`traceparent`; the `trace_id`
    attribute of messages published before the W3C context)."""
    span_context = trace.get_current_span(propagate.extract(attributes)).get_span_context()
    if span_context.is_valid:
        return trace.format_trace_id(span_context.trace_id)
    return attributes.get("trace_id")


def stored_trace_id(attributes: Mapping[str, Any]) -> str | None:
    """The trace id in an outbox row's attributes."""
    return trace_id_in({k: v.get("StringValue", "") for k, v in attributes.items()})


@contextlib.contextmanager
def publishing(topic_arn: str, entries: Sequence[MutableMapping[str, Any]]) -> Iterator[None]:
    """Around a relay's PublishBatch: a producer span per entry, child of the context
    stored with it, and each entry carries its own span's context (not the batch's, as
    botocore would inject: the entries belong to different orders)."""
    destination = topic_arn.rsplit(":", 1)[-1]
    spans = []
    for entry in entries:
        attributes = entry.setdefault("MessageAttributes", {})
        parent = propagate.extract(attributes, getter=_ATTRIBUTES)
        span = _tracer.start_span(
            f"{destination} publish",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "aws_sns",
                "messaging.operation.type": "send",
                "messaging.destination.name": destination,
            },
        )
        for key in propagate.get_global_textmap().fields:
            attributes.pop(key, None)
        propagate.inject(attributes, trace.set_span_in_context(span), setter=_ATTRIBUTES)
        spans.append(span)
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    try:
        with suppress_instrumentation():
            yield
    except Exception as error:
        for span in spans:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        for span in spans:
            span.end()


@contextlib.contextmanager
def producing(destination: str) -> Iterator[None]:
    """A producer span, current inside the block, for a publish outside the relay."""
    with _tracer.start_as_current_span(
        f"{destination} publish",
        kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "aws_sns", "messaging.destination.name": destination},
    ):
        yield


@contextlib.contextmanager
def consuming(message: Message, queue: str) -> Iterator[None]:
    """The span of one message's handling, continuing the trace its attributes carry."""
    parent = propagate.extract(message.message_attributes)
    with _tracer.start_as_current_span(
        f"{queue} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": message.message_id,
            "messaging.message.delivery_count": message.receive_count,
        },
        # A handler's failure is the consumer's to report (retry or dead-letter), below.
        record_exception=False,
        set_status_on_exception=False,
    ):
        yield


class SpanEvents(Middleware):
    """Marks a message's span with its outcome: the handler's error, a retry, a dead letter."""

    def after_process(self, message: Message, seconds: float, error: BaseException | None) -> None:
        """The handler raised: the span records it."""
        if error is not None:
            span = trace.get_current_span()
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))

    def after_retry(self, message: Message, delay: int, reason: str) -> None:
        """The message goes back to the queue."""
        trace.get_current_span().add_event("retry", {"delay_seconds": delay, "reason": reason})

    def after_dead_letter(self, message: Message, reason: str) -> None:
        """The message went to the dead-letter queue."""
        trace.get_current_span().add_event("dead-lettered", {"reason": reason})
