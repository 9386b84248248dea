"""The supervisord event listener protocol (READY, event header + payload, RESULT)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

Handler = Callable[[dict[str, str], str], None]


def parse_header(line: str) -> dict[str, str]:
    """`ver:3.0 server:supervisor ... len:54` -> dict.

    :raise RuntimeError: when the line is not a supervisord event header.
    """
    try:
        header = dict(token.split(":", 1) for token in line.split())
    except ValueError:
        raise RuntimeError(f"malformed event header: {line.strip()[:200]!r}") from None
    if "eventname" not in header or "len" not in header:
        raise RuntimeError(f"event header lacks eventname or len: {line.strip()[:200]!r}")
    return header


def parse_payload(payload: str) -> tuple[dict[str, str], str]:
    """Split a payload into its header tokens and the data after the first newline."""
    first, _, data = payload.partition("\n")
    return parse_header_tokens(first), data


def parse_header_tokens(line: str) -> dict[str, str]:
    """`processname:web groupname:web from_state:BACKOFF` -> dict."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def serve(stdin: TextIO, stdout: TextIO, handle: Handler, *, once: bool = False) -> None:
    """Answer READY, read one event, call `handle`, acknowledge; repeat until stdin ends."""
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        header = parse_header(line)
        payload = stdin.read(int(header["len"]))
        handle(header, payload)
        stdout.write("RESULT 2\nOK")
        stdout.flush()
        if once:
            return
