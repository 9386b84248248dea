"""One order, one trace: every program of a real stack exports its spans over OTLP/HTTP
to a receiver in the test, and the order's spans, from the web's request to the results
back, share one W3C trace id."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from devtools.emulator import free_port
from tests.support.emulators import Emulator
from tests.support.fixtures import PREFIX, stack_environment
from tests.support.stack import Api, SupervisedStack, provision, wait_for

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Received:
    """One exported span, with the program (service.name) that sent it."""

    program: str
    trace_id: str
    name: str
    kind: int


class OtlpReceiver:
    """The OTLP/HTTP traces endpoint (POST /v1/traces, protobuf) on 127.0.0.1."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, request: ExportTraceServiceRequest) -> None:
        """Keep every span of an export request."""
        with self._lock:
            for resource_spans in request.resource_spans:
                names = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(
                        Received(names.get("service.name", ""), s.trace_id.hex(), s.name, s.kind)
                        for s in scope_spans.spans
                    )

    def received(self) -> list[Received]:
        """The spans received so far."""
        with self._lock:
            return list(self.spans)

    def stop(self) -> None:
        """Close the endpoint."""
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Traced:
    """A stack exporting to a receiver."""

    receiver: OtlpReceiver
    api: Api


@pytest.fixture(scope="module")
def traced(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """A stack of its own (its own queues: no other stack takes its messages), exporting."""
    if os.environ.get("TEST_EMULATOR", "native") != "native":
        pytest.skip("traces are checked in the native tier (a stack of their own per run)")
    receiver = OtlpReceiver()
    env = stack_environment(
        emulator.endpoint_url,
        tmp_path_factory.mktemp("traced-data"),
        RESOURCE_PREFIX=f"{PREFIX}-traced",
        CONSUMER_WAIT_SECONDS="2",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        # Export within a fraction of a second (the SDK's default waits 5 s).
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    try:
        provision(env)
        stack = SupervisedStack(tmp_path_factory.mktemp("traced-stack"), env)
        stack.start(timeout=180)
        try:
            yield Traced(receiver, Api(stack.base_url))
        finally:
            stack.stop()
    finally:
        receiver.stop()


SERVICES = ("email_service", "inventory_service", "analytics_service")


def test_one_order_is_one_trace_across_every_program(traced: Traced, tmp_path: Path) -> None:
    response = traced.api.post_order(
        f"traced-{uuid.uuid4().hex[:10]}@example.com", [{"sku": "KB-001", "quantity": 1}]
    )
    assert response.status_code == 201, response.text
    trace_id = response.headers["X-Trace-Id"]
    assert len(trace_id) == 32
    traced.api.wait_settled(response.json()["id"], timeout=60)

    def of_trace() -> list[Received]:
        return [s for s in traced.receiver.received() if s.trace_id == trace_id]

    def complete() -> list[Received] | None:
        spans = of_trace()
        consumers = [s for s in spans if s.kind == Span.SPAN_KIND_CONSUMER]
        everyone = {s.program for s in consumers} >= {*SERVICES, "web_worker"}
        # Three results back to the web, each handled by the web_worker.
        results = sum(s.program == "web_worker" for s in consumers) >= 3
        # The web's request span: its process exports on its own schedule, which may come
        # after the consumers' spans.
        request = any(s.program == "web" and s.kind == Span.SPAN_KIND_SERVER for s in spans)
        return spans if everyone and results and request else None

    spans = wait_for(complete, 30, f"every program's spans in trace {trace_id}", interval=0.25)
    by_program = {p: [s for s in spans if s.program == p] for p in {s.program for s in spans}}
    # The web: the request that placed the order, and its store's queries.
    assert any(
        s.kind == Span.SPAN_KIND_SERVER and s.name.startswith("POST") for s in by_program["web"]
    )
    # The event was published in the same trace: by the web right after its commit, or by
    # the relay (web_worker), its safety net.
    assert any(
        s.kind == Span.SPAN_KIND_PRODUCER and s.name.endswith("publish")
        for s in by_program["web"] + by_program.get("web_worker", [])
    )
    for service in SERVICES:
        kinds = {s.kind for s in by_program[service]}
        # Its message's handling, and the result it published back (botocore's span).
        assert {Span.SPAN_KIND_CONSUMER, Span.SPAN_KIND_PRODUCER} <= kinds, service
    # The confirmation went out through SES inside the email service's handling.
    assert any(s.name.startswith("SES") for s in by_program["email_service"])
    # One trace: every order message's handling and every publish of this stack is in it
    # (SES's own delivery events, which carry no context, start theirs).
    messaging = [
        s
        for s in traced.receiver.received()
        if s.kind in (Span.SPAN_KIND_CONSUMER, Span.SPAN_KIND_PRODUCER)
        and "email-sends" not in s.name
    ]
    assert {s.trace_id for s in messaging} == {trace_id}
