"""HTTP load on the web's POST /api/orders: open loop at a set rate, or closed loop.

Requests go to 127.0.0.1 only, and every run is bounded in count and in time.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.core.stats import send_offsets

#: A kept-alive connection idle longer than this is replaced before use: gunicorn closes
#: idle ones after 2 s, and a POST sent on a closing connection would fail or be doubled.
IDLE_RECONNECT_S = 1.0
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Sent:
    """One POST: when it was due, when it went out and came back (monotonic), and its answer."""

    index: int
    due: float
    started: float
    ended: float
    status: int
    order_id: str | None = None

    @property
    def latency(self) -> float:
        """From when it was due to the answer: includes any wait for a free sender, so an
        overloaded server is not hidden by a late client (coordinated omission)."""
        return self.ended - self.due


class OrderClient:
    """One kept-alive HTTP connection to the web, posting orders."""

    def __init__(self, base_url: str, body_for: Callable[[int], bytes]) -> None:
        url = urlsplit(base_url)
        if url.hostname != "127.0.0.1" or url.port is None:
            raise ValueError(f"load goes to 127.0.0.1 only, not {base_url}")
        self.host, self.port = url.hostname, url.port
        self.body_for = body_for
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_RECONNECT_S:
            self.close()
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        return self._conn

    def post(self, index: int) -> tuple[int, str | None]:
        """POST one order; (HTTP status or 0 on a connection error, the new order's id)."""
        try:
            conn = self._connection()
            conn.request(
                "POST",
                "/api/orders",
                body=self.body_for(index),
                headers={"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            payload = response.read()
            self._last_used = time.monotonic()
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, None
        if response.status != 201:
            return response.status, None
        return 201, str(json.loads(payload)["id"])

    def close(self) -> None:
        """Drop the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def order_body(index: int, sku: str) -> bytes:
    """The JSON of order `index`: one line of `sku`, a customer of its own."""
    return json.dumps(
        {"customer_email": f"load{index}@example.com", "items": [{"sku": sku, "quantity": 1}]}
    ).encode()


def open_loop(
    base_url: str,
    body_for: Callable[[int], bytes],
    *,
    rate: float,
    count: int,
    senders: int,
    max_seconds: float,
) -> list[Sent]:
    """Send `count` POSTs due at a constant `rate`, whatever the answers take.

    `senders` threads share the schedule; when all are busy a request goes out late and
    its latency counts from when it was due. Requests not sent by `max_seconds` are
    dropped (they are missing from the result).
    """
    offsets = send_offsets(rate, count)
    start = time.monotonic() + 0.05
    return _post_all(
        base_url,
        body_for,
        threads=senders,
        count=count,
        stop_at=start + max_seconds,
        due=lambda index: start + offsets[index],
    )


def closed_loop(
    base_url: str,
    body_for: Callable[[int], bytes],
    *,
    clients: int,
    seconds: float,
    max_requests: int,
) -> list[Sent]:
    """`clients` threads each POST, wait for the answer, POST again, for `seconds`."""
    return _post_all(
        base_url,
        body_for,
        threads=clients,
        count=max_requests,
        stop_at=time.monotonic() + seconds,
    )


def _post_all(
    base_url: str,
    body_for: Callable[[int], bytes],
    *,
    threads: int,
    count: int,
    stop_at: float,
    due: Callable[[int], float] | None = None,
) -> list[Sent]:
    """`threads` threads POST the next of `count` orders until `stop_at`, each not before `due`."""
    lock = threading.Lock()
    results: list[Sent] = []
    cursor = iter(range(count))

    def sender() -> None:
        client = OrderClient(base_url, body_for)
        try:
            while time.monotonic() < stop_at:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                due_at = None if due is None else due(index)
                if due_at is not None:
                    wait = due_at - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    if time.monotonic() > stop_at:
                        return
                started = time.monotonic()
                status, order_id = client.post(index)
                sent = Sent(index, due_at or started, started, time.monotonic(), status, order_id)
                with lock:
                    results.append(sent)
        finally:
            client.close()

    _run_threads(sender, threads)
    return sorted(results, key=lambda s: s.index)


def _run_threads(target: Callable[[], None], count: int) -> None:
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
