"""Prometheus metrics of a consumer, through the runtime's Middleware hooks.

The runtime knows nothing about Prometheus; a program adds this middleware to its Consumer.
"""

from __future__ import annotations

import collections
import threading
import time

from pubsub_supervisor import metrics
from pubsub_supervisor.runtime import Message, Middleware

#: The oldest-age gauge covers messages handled this many seconds back.
AGE_WINDOW_SECONDS = 60.0
#: How often the gauge forgets ages that left the window.
REFRESH_SECONDS = 5.0


class MetricsMiddleware(Middleware):
    """Counts, times and ages the messages of one consumer, labelled by program and queue."""

    def __init__(self, program: str, queue: str) -> None:
        labels = {"program": program, "queue": queue}
        self._received = metrics.RECEIVED.labels(**labels)
        self._processed = metrics.PROCESSED.labels(**labels)
        self._failed = metrics.FAILED.labels(**labels)
        self._retried = metrics.RETRIED.labels(**labels)
        self._dead_lettered = metrics.DEAD_LETTERED.labels(**labels)
        self._latency = metrics.HANDLER_LATENCY.labels(**labels)
        self._age = metrics.MESSAGE_AGE.labels(**labels)
        self._oldest = metrics.OLDEST_MESSAGE_AGE.labels(**labels)
        self._lock = threading.Lock()
        #: (monotonic time handled, age) of recent messages, oldest first.
        self._recent: collections.deque[tuple[float, float]] = collections.deque()
        self._oldest.set(0)
        # Ages leave the window while the queue is idle too: refresh the gauge now and then.
        threading.Thread(target=self._refresh_loop, name="age-window", daemon=True).start()

    def after_receive(self, queue: str, count: int) -> None:
        """Count received messages."""
        self._received.inc(count)

    def before_process(self, message: Message) -> None:
        """Record the message's age as its handler starts."""
        sent = message.sent_timestamp
        if sent is None:
            return
        age = max(0.0, time.time() - sent)
        self._age.observe(age)
        self.observe_age(age, time.monotonic())

    def observe_age(self, age: float, at: float) -> None:
        """Fold one age into the oldest-in-window gauge."""
        with self._lock:
            self._recent.append((at, age))
        self.refresh(at)

    def refresh(self, at: float) -> float:
        """Drop ages older than the window; set and return the gauge."""
        with self._lock:
            while self._recent and self._recent[0][0] < at - AGE_WINDOW_SECONDS:
                self._recent.popleft()
            oldest = max((a for _, a in self._recent), default=0.0)
            self._oldest.set(oldest)
        return oldest

    def _refresh_loop(self) -> None:
        while True:
            time.sleep(REFRESH_SECONDS)
            self.refresh(time.monotonic())

    def after_process(self, message: Message, seconds: float, error: BaseException | None) -> None:
        """Time the handler; count its success or failure."""
        self._latency.observe(seconds)
        if error is None:
            self._processed.inc()
        else:
            self._failed.inc()

    def after_retry(self, message: Message, delay: int, reason: str) -> None:
        """Count a retry."""
        self._retried.inc()

    def after_dead_letter(self, message: Message, reason: str) -> None:
        """Count a dead-lettered message."""
        self._dead_lettered.inc()
