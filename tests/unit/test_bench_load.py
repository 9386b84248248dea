"""The benchmark's load generator against a local HTTP server that accepts every order."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.e2e.load import closed_loop, open_loop, order_body


class _Accept(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        email = json.loads(self.rfile.read(length))["customer_email"]
        body = json.dumps({"id": email.split("@")[0]}).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the results, not the log."""


@pytest.fixture
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_open_loop_sends_every_order_at_its_due_time(web: str) -> None:
    sent = open_loop(
        web, lambda i: order_body(i, "SKU"), rate=50, count=10, senders=2, max_seconds=10
    )
    assert [s.index for s in sent] == list(range(10))
    assert all(s.status == 201 and s.order_id == f"load{s.index}" for s in sent)
    assert all(s.started >= s.due for s in sent)
    assert sent[9].due - sent[0].due == pytest.approx(9 / 50)


def test_closed_loop_stops_at_its_request_limit_and_times_from_the_send(web: str) -> None:
    sent = closed_loop(web, lambda i: order_body(i, "SKU"), clients=3, seconds=10, max_requests=7)
    assert [s.index for s in sent] == list(range(7))
    assert all(s.status == 201 and s.due == s.started <= s.ended for s in sent)
