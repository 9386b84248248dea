"""The completion signal: workers append what they handled and acked; the harness reads it."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path


class Tally:
    """Appends one line per handled message and per ack to a file shared by all workers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _open(self) -> int:
        # Opened lazily so a forked worker child writes through its own descriptor;
        # O_APPEND keeps lines from concurrent processes whole.
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            return self._fd

    def handled(self, key: str, started: float, ended: float) -> None:
        """Record one handler call on message `key` and when it ran (wall clock)."""
        os.write(self._open(), f"H {key} {started:.6f} {ended:.6f}\n".encode())

    def acked(self, count: int, at: float) -> None:
        """Record that `count` messages were deleted from the queue at `at`."""
        if count:
            os.write(self._open(), f"A {count} {at:.6f}\n".encode())

    def received(self, count: int) -> None:
        """Record one ReceiveMessage call that returned `count` messages."""
        os.write(self._open(), f"R {count}\n".encode())


@dataclass
class TallySummary:
    """What the workers reported so far."""

    handled: int = 0
    keys: set[str] = field(default_factory=set)
    acked: int = 0
    #: DeleteMessage/DeleteMessageBatch calls that deleted something.
    ack_calls: int = 0
    #: ReceiveMessage calls made through botocore, empty ones included.
    receive_calls: int = 0
    first_start: float | None = None
    last_end: float | None = None
    last_ack: float | None = None

    @property
    def finished_at(self) -> float | None:
        """When the last handler call or ack finished, whichever is later."""
        ends = [t for t in (self.last_end, self.last_ack) if t is not None]
        return max(ends) if ends else None


class TallyReader:
    """Reads a tally file incrementally, keeping a running summary."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.summary = TallySummary()
        self._offset = 0
        self._partial = b""

    def poll(self) -> TallySummary:
        """Fold in every complete line written since the last poll."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return self.summary
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._fold(line.decode())
        return self.summary

    def _fold(self, line: str) -> None:
        parts = line.split()
        s = self.summary
        if parts[0] == "H":
            started, ended = float(parts[2]), float(parts[3])
            s.handled += 1
            s.keys.add(parts[1])
            s.first_start = started if s.first_start is None else min(s.first_start, started)
            s.last_end = ended if s.last_end is None else max(s.last_end, ended)
        elif parts[0] == "A":
            at = float(parts[2])
            s.acked += int(parts[1])
            s.ack_calls += 1
            s.last_ack = at if s.last_ack is None else max(s.last_ack, at)
        elif parts[0] == "R":
            s.receive_calls += 1
        else:
            raise ValueError(f"unexpected tally line {line!r}")
