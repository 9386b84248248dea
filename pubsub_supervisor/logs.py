"""JSON log lines carrying the program name and the ids of the event being handled."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

#: Ids bound to the current thread of work: event_id, order_id, trace_id, message_id
#: (trace_id, when none is bound, is the current span's).
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context")

_RESERVED = frozenset(vars(logging.makeLogRecord({})))


@contextlib.contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Add ids to every log line written inside the block."""
    current = _context.get({})
    token = _context.set({**current, **{k: v for k, v in ids.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def current_ids() -> dict[str, str]:
    """Ids bound to the current context."""
    return dict(_context.get({}))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, program, logger, message, ids, extras."""

    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as one line of JSON."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "program": self.program,
            "logger": record.name,
            "message": record.getMessage(),
            **_context.get({}),
        }
        if "trace_id" not in line:
            # Inside a span (a request, a message's handling): its W3C trace id.
            span = trace.get_current_span().get_span_context()
            if span.is_valid:
                line["trace_id"] = trace.format_trace_id(span.trace_id)
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(program: str, level: str = "INFO") -> None:
    """Send every log record to stdout as JSON (supervisord collects it per program)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(program))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
