"""The consumer drain part: every contender empties an identical pre-filled SQS queue."""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.core import payload
from bench.drain.contenders.specs import Spec
from bench.drain.harness import Harness, RunResult, Workload
from bench.drain.report import Row, build_rows, format_cost_table, format_table

#: The handlers every contender runs: a no-op, and a 5 ms sleep standing in for I/O.
HANDLERS: tuple[tuple[str, float], ...] = (("no-op", 0.0), ("5ms-io", 5.0))
FULL_MESSAGES, QUICK_MESSAGES = 3000, 300
#: Per-run limit on the worker's life (start-up included); past it the run is a timeout.
FULL_TIMEOUT_S, QUICK_TIMEOUT_S = 90.0, 30.0
LIBRARIES = ("boto3", "celery", "kombu", "dramatiq", "dramatiq-sqs", "sqs-workers")

Say = Callable[[str], None]


@dataclass
class DrainOutcome:
    """Every run, and the rows (medians and ratios) built from them."""

    messages: int
    timeout_s: float
    repeat: int
    results: list[RunResult]
    rows: list[Row]

    @property
    def handlers(self) -> list[str]:
        """The handler names, in table order."""
        return [name for name, _ in HANDLERS]

    @property
    def failed(self) -> bool:
        """True when a run crashed, lost a message or left one in its queue."""
        return any(r.status == "failed" for r in self.results)

    def tables(self) -> str:
        """The rate table and the cost table."""
        return (
            format_table(self.rows, self.handlers)
            + "\n\n"
            + format_cost_table(self.rows, self.handlers[0])
        )

    def to_json(self) -> dict[str, Any]:
        """Everything measured."""
        versions = {}
        for name in LIBRARIES:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[name] = importlib.metadata.version(name)
        return {
            "messages": self.messages,
            "body_bytes": payload.BODY_BYTES,
            "repeat": self.repeat,
            "timeout_s": self.timeout_s,
            "handlers": dict(HANDLERS),
            "libraries": versions,
            "rows": [asdict(row) for row in self.rows],
            "runs": [asdict(result) for result in self.results],
        }


def run_drain(
    specs: Sequence[Spec],
    *,
    endpoint: str,
    emulator_pid: int | None,
    workdir: Path,
    logdir: Path,
    messages: int,
    timeout_s: float,
    repeat: int,
    say: Say,
) -> DrainOutcome:
    """Every spec under every handler, `repeat` times."""
    harness = Harness(endpoint, workdir, logdir=logdir, emulator_pid=emulator_pid, say=say)
    results: list[RunResult] = []
    total = len(specs) * len(HANDLERS) * repeat
    try:
        for n in range(repeat):
            # Each repeat starts further down the list, so a contender does not always
            # meet the same moment of a shared machine's load.
            shift = n * len(specs) // repeat
            for spec in [*specs[shift:], *specs[:shift]]:
                for handler, work_ms in HANDLERS:
                    say(
                        f"[{len(results) + 1}/{total}] {spec.key} / {handler}"
                        + (f" (repeat {n + 1})" if repeat > 1 else "")
                    )
                    load = Workload(handler, work_ms, messages, timeout_s)
                    results.append(harness.run(spec, load))
    finally:
        harness.children.stop_all()
    rows = build_rows(results, [name for name, _ in HANDLERS])
    return DrainOutcome(messages, timeout_s, repeat, results, rows)
