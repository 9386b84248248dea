"""The one backoff: delays double per attempt from the base, up to the cap."""

from __future__ import annotations

import pytest

from pubsub_supervisor.retry import Backoff, backoff


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (10_000, 10.0)],
)
def test_backoff_doubles_per_attempt_and_is_capped(attempt: int, expected: float) -> None:
    assert backoff(attempt, 0.5, 10.0) == expected


def test_backoff_never_overflows_on_a_huge_attempt() -> None:
    assert backoff(10**9, 1.5, 300.0) == 300.0


def test_backoff_object_gives_successive_delays_and_resets() -> None:
    delays = Backoff(1.0, 5.0)
    assert delays.delay == 1.0
    assert [delays.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    delays.reset()
    assert delays.next() == 1.0
    assert delays.delay == 2.0
