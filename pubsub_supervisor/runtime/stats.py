"""The consumer's counters: a middleware every consumer has, counting from the hooks.

It is the one place messages are counted: the "consumer stopped" log line reads it, and
the Prometheus middleware is a `ConsumerStats` that also exports each count.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pubsub_supervisor.runtime.middleware import Middleware

if TYPE_CHECKING:
    from pubsub_supervisor.runtime.message import Message

#: The counters, in the order the stop log shows them.
COUNTERS = ("received", "processed", "failed", "retried", "dead_lettered", "released", "extended")


class ConsumerStats(Middleware):
    """Counters since start: received, processed, failed (handler runs that raised),
    retried, dead_lettered, released (handed back on stop), extended (by the heartbeat)."""

    received: int
    processed: int
    failed: int
    retried: int
    dead_lettered: int
    released: int
    extended: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        for name in COUNTERS:
            setattr(self, name, 0)

    def add(self, counter: str, n: int = 1) -> None:
        """Count `n` more of `counter`, then tell `counted`."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)
        self.counted(counter, n)

    def counted(self, counter: str, n: int) -> None:
        """Called after each count; exporters override it."""

    def snapshot(self) -> dict[str, int]:
        """Every counter by name."""
        with self._lock:
            return {name: getattr(self, name) for name in COUNTERS}

    def after_receive(self, queue: str, count: int) -> None:
        """Count received messages."""
        self.add("received", count)

    def after_process(self, message: Message, seconds: float, error: BaseException | None) -> None:
        """Count a handler's success or failure."""
        self.add("processed" if error is None else "failed")

    def after_retry(self, message: Message, delay: int, reason: str) -> None:
        """Count a retry."""
        self.add("retried")

    def after_dead_letter(self, message: Message, reason: str) -> None:
        """Count a dead-lettered message."""
        self.add("dead_lettered")

    def after_release(self, messages: Sequence[Message]) -> None:
        """Count messages handed back."""
        self.add("released", len(messages))

    def after_extend(self, messages: Sequence[Message]) -> None:
        """Count visibility extensions."""
        self.add("extended", len(messages))
