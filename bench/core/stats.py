"""Pure arithmetic of the end-to-end benchmark: percentiles, rate ladders, completion rates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks.

    The same definition as numpy's default: p0 is the minimum, p100 the maximum.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Latency:
    """Percentiles of a set of durations, in seconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency | None:
        """The summary of `values`, or None when there are none."""
        if not values:
            return None
        return cls(
            count=len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=max(values),
        )


def nice(value: float) -> float:
    """`value` rounded to two significant digits (rates a reader can repeat)."""
    if value <= 0:
        raise ValueError("rates are positive")
    scale = 10.0 ** (1 - math.floor(math.log10(value)))
    # Half up, as a reader rounds (round() would make 22.5 into 22).
    return math.floor(value * scale + 0.5) / scale


def rate_ladder(start: float, factor: float, steps: int) -> list[float]:
    """`steps` offered rates growing geometrically from `start` by `factor`, two digits each."""
    if start <= 0 or factor <= 1 or steps < 1:
        raise ValueError("a ladder needs start > 0, factor > 1 and at least one step")
    rates: list[float] = []
    for n in range(steps):
        rate = nice(start * factor**n)
        # Rounding must not repeat a rung at low rates.
        if rates and rate <= rates[-1]:
            rate = rates[-1] + 1
        rates.append(rate)
    return rates


def step_size(rate: float, duration_s: float, max_orders: int, min_orders: int = 10) -> int:
    """Orders one step sends: `duration_s` at `rate`, within [min_orders, max_orders]."""
    return max(min_orders, min(max_orders, math.ceil(rate * duration_s)))


def send_offsets(rate: float, count: int) -> list[float]:
    """When each request of an open-loop step is due, in seconds from the step's start."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return [i / rate for i in range(count)]


def completion_rate(done_at: Sequence[float]) -> float | None:
    """Completions per second: (N - 1) over the span from the first to the last.

    Counting intervals, not items, makes a step that kept up at rate r come out at r
    whatever its length; under overload it is the rate the system drained at.
    """
    if len(done_at) < 2:
        return None
    span = max(done_at) - min(done_at)
    return (len(done_at) - 1) / span if span > 0 else None


def kept_up(offered: float, achieved: float | None, tolerance: float = 0.9) -> bool:
    """True when the system completed at least `tolerance` of the rate it was offered."""
    return achieved is not None and achieved >= tolerance * offered


def batch_rate(times: Sequence[float]) -> float | None:
    """Items per second when items complete in batches sharing one timestamp.

    The first batch only marks the start: (N - size of the first batch) / (last - first).
    """
    if not times:
        return None
    first, last = min(times), max(times)
    if last <= first:
        return None
    first_batch = sum(1 for t in times if t == first)
    return (len(times) - first_batch) / (last - first)
