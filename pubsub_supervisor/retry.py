"""Exponential backoff, the one place it is computed: delays double per attempt, capped."""

from __future__ import annotations

#: Doublings past this change nothing for any cap in use, and keep the numbers small.
MAX_DOUBLINGS = 30


def backoff(attempt: int, base: float, cap: float) -> float:
    """Delay before retry `attempt` (1 for the first): base * 2**(attempt-1), at most `cap`."""
    doublings = min(max(attempt, 1) - 1, MAX_DOUBLINGS)
    return float(min(cap, base * 2**doublings))


class Backoff:
    """The delays of one retry loop: `next()` after each failure, `reset()` after a success."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 1

    @property
    def delay(self) -> float:
        """The delay `next()` returns now."""
        return backoff(self.attempt, self.base, self.cap)

    def next(self) -> float:
        """The delay before the next attempt; the one after it doubles."""
        delay = self.delay
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from `base`."""
        self.attempt = 1
