"""A TCP proxy in front of the emulator that can take one AWS service down.

Every program of a stack talks to the emulator through it. Each boto3 client keeps its
own connections, so the first request on a connection tells which service the
connection serves (the credential scope of its Authorization header:
`.../us-east-1/sns/aws4_request`). While a service is blocked, its connections are cut
and new ones are answered 503, as an unreachable regional endpoint would be.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading

from devtools.emulator import free_port

_SCOPE = re.compile(rb"Credential=[^/]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request", re.IGNORECASE)
_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 19\r\nConnection: close\r\n\r\nservice unavailable"
)


class FaultProxy:
    """Forward 127.0.0.1:port to the emulator; `block("sns")` takes SNS down."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.refused: dict[str, int] = {}
        self._blocked: set[str] = set()
        self._open: dict[socket.socket, str] = {}
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        """The address the stack uses instead of the emulator's."""
        return f"http://127.0.0.1:{self.port}"

    def block(self, service: str) -> None:
        """Refuse the service's requests and cut its open connections."""
        with self._lock:
            self._blocked.add(service)
            doomed = [s for s, name in self._open.items() if name == service]
        for sock in doomed:
            _cut(sock)

    def unblock(self, service: str) -> None:
        """Let the service's requests through again."""
        with self._lock:
            self._blocked.discard(service)

    def close(self) -> None:
        """Stop listening and cut every connection."""
        self._server.close()
        with self._lock:
            doomed = list(self._open)
        for sock in doomed:
            _cut(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = _recv(client)
            if not chunk:
                client.close()
                return
            head += chunk
        match = _SCOPE.search(head)
        service = match.group(1).decode().lower() if match else "unknown"
        with self._lock:
            blocked = service in self._blocked
            if blocked:
                self.refused[service] = self.refused.get(service, 0) + 1
        if blocked:
            with contextlib.suppress(OSError):
                client.sendall(_UNAVAILABLE)
            _cut(client)
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            _cut(client)  # the emulator itself is down
            client.close()
            return
        with self._lock:
            self._open[client] = service
            self._open[upstream] = service
        upstream.sendall(head)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        with self._lock:
            self._open.pop(client, None)
            self._open.pop(upstream, None)
        client.close()
        upstream.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both ways."""
    while True:
        data = _recv(source)
        if not data:
            break
        try:
            target.sendall(data)
        except OSError:
            break
    _cut(source)
    _cut(target)


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
