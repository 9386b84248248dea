"""Prometheus metrics of a consumer, through the runtime's Middleware hooks.

The runtime knows nothing about Prometheus; a program adds this middleware to its Consumer,
which then counts through it (it is the consumer's `ConsumerStats`).
"""

from __future__ import annotations

import collections
import threading
import time

from pubsub_supervisor import metrics
from pubsub_supervisor.runtime.message import Message
from pubsub_supervisor.runtime.stats import ConsumerStats

#: The oldest-age gauge covers messages handled this many seconds back.
AGE_WINDOW_SECONDS = 60.0
#: How often the gauge forgets ages that left the window.
REFRESH_SECONDS = 5.0


class MetricsMiddleware(ConsumerStats):
    """Counts, times and ages the messages of one consumer, labelled by program and queue."""

    def __init__(self, program: str, queue: str) -> None:
        super().__init__()
        labels = {"program": program, "queue": queue}
        #: The Prometheus counter of each consumer counter that has one.
        self._exported = {
            "received": metrics.RECEIVED.labels(**labels),
            "processed": metrics.PROCESSED.labels(**labels),
            "failed": metrics.FAILED.labels(**labels),
            "retried": metrics.RETRIED.labels(**labels),
            "dead_lettered": metrics.DEAD_LETTERED.labels(**labels),
        }
        self._latency = metrics.HANDLER_LATENCY.labels(**labels)
        self._age = metrics.MESSAGE_AGE.labels(**labels)
        self._oldest = metrics.OLDEST_MESSAGE_AGE.labels(**labels)
        self._ages_lock = threading.Lock()
        #: (monotonic time handled, age) of recent messages, oldest first.
        self._recent: collections.deque[tuple[float, float]] = collections.deque()
        self._oldest.set(0)
        # Ages leave the window while the queue is idle too: refresh the gauge now and then.
        threading.Thread(target=self._refresh_loop, name="age-window", daemon=True).start()

    def counted(self, counter: str, n: int) -> None:
        """Export a count."""
        exported = self._exported.get(counter)
        if exported is not None:
            exported.inc(n)

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
        with self._ages_lock:
            self._recent.append((at, age))
        self.refresh(at)

    def refresh(self, at: float) -> float:
        """Drop ages older than the window; set and return the gauge."""
        with self._ages_lock:
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
        super().after_process(message, seconds, error)
