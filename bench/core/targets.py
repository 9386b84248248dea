"""The performance targets, checked against the ratios and figures of one run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pubsub_ops.tables import table


@dataclass(frozen=True)
class Figures:
    """What the targets are computed from; None where that part did not run."""

    runtime_noop: float | None = None
    runtime_io: float | None = None
    raw_noop: float | None = None
    naive_noop: float | None = None
    libraries_noop: float | None = None
    libraries_io: float | None = None
    e2e_sustained: float | None = None
    fanout_ceiling: float | None = None
    half_load_p99_ms: float | None = None
    idle_cpu_percent: float | None = None
    idle_rss_mb: float | None = None


@dataclass(frozen=True)
class Target:
    """One target: the measured value against its bound."""

    name: str
    #: The measured ratio or figure, None when it could not be measured in this run.
    value: float | None
    bound: float
    #: ">=" or "<"
    op: str
    unit: str

    @property
    def met(self) -> bool | None:
        """True/False, or None when not measured."""
        if self.value is None:
            return None
        return self.value >= self.bound if self.op == ">=" else self.value < self.bound


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def evaluate(f: Figures) -> list[Target]:
    """Every target, met or not (or not measured)."""
    return [
        Target(
            "runtime no-op vs fastest raw batched loop",
            _ratio(f.runtime_noop, f.raw_noop),
            0.9,
            ">=",
            "x",
        ),
        Target("runtime no-op vs naive loop", _ratio(f.runtime_noop, f.naive_noop), 8, ">=", "x"),
        Target(
            "runtime no-op vs fastest of Celery/dramatiq/sqs-workers",
            _ratio(f.runtime_noop, f.libraries_noop),
            1.25,
            ">=",
            "x",
        ),
        Target(
            "runtime 5 ms handler vs fastest of Celery/dramatiq/sqs-workers",
            _ratio(f.runtime_io, f.libraries_io),
            4,
            ">=",
            "x",
        ),
        Target(
            "end to end sustained orders/s vs raw SNS fan-out ceiling",
            _ratio(f.e2e_sustained, f.fanout_ceiling),
            0.6,
            ">=",
            "x",
        ),
        Target("e2e p99 at half the sustained load", f.half_load_p99_ms, 250, "<", "ms"),
        Target("idle CPU of the programs together", f.idle_cpu_percent, 2, "<", "% of a core"),
        Target("resident memory of the programs together", f.idle_rss_mb, 300, "<", "MB"),
    ]


#: The head of the targets table.
HEAD = ("target", "measured", "bound", "met")


def rows(targets: Sequence[Target], *, missed: str = "NO") -> list[list[str]]:
    """Target, measured, bound and verdict per target; `missed` marks one not met."""
    verdicts = {True: "yes", False: missed, None: "not measured"}
    return [
        [
            t.name,
            "-" if t.value is None else f"{t.value:.2f} {t.unit}".strip(),
            f"{t.op} {t.bound:g} {t.unit}".strip(),
            verdicts[t.met],
        ]
        for t in targets
    ]


def format_targets(targets: Sequence[Target]) -> str:
    """A fixed-width table: target, measured, bound, verdict."""
    return table(HEAD, rows(targets))
