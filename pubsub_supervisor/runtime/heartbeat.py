"""The visibility heartbeat: messages still in hand stay invisible to other consumers."""

from __future__ import annotations

import logging
import threading

from pubsub_supervisor.runtime.visibility import Visibility

log = logging.getLogger(__name__)


class Heartbeat:
    """Extends, every sixth of the visibility timeout, the messages about to reappear."""

    def __init__(self, visibility: Visibility, visibility_timeout: int) -> None:
        self.visibility = visibility
        self.visibility_timeout = visibility_timeout
        #: Seconds between beats: often enough for short timeouts, at most every 5 s.
        self.tick = max(0.2, min(5.0, visibility_timeout / 6))
        self._stopped = threading.Event()

    def run(self) -> None:
        """Beat until `stop()`."""
        while not self._stopped.wait(self.tick):
            self.beat()

    def beat(self) -> int:
        """Extend what is due now; return how many."""
        due = self.visibility.extend_expiring(self.visibility_timeout)
        if due:
            log.debug("visibility extended", extra={"count": len(due)})
        return len(due)

    def stop(self) -> None:
        """End `run()` within one tick."""
        self._stopped.set()
