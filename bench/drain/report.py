"""Drain results as rows with ratios: text and Markdown tables, target figures, a bar plot."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.results import markdown
from bench.drain.harness import RunResult
from pubsub_ops.tables import table

#: The row every other row is compared with: the project's runtime as shipped.
REFERENCE = ("runtime", "default")
#: The hand-written batched loops; the fastest of them is the practical ceiling.
RAW_CEILING = "batched"
#: Library contenders the runtime is compared with.
LIBRARIES = ("celery", "dramatiq", "sqs-workers")


@dataclass
class Cell:
    """One contender/setting under one handler, over its repeats."""

    #: Median rate of the ok repeats; else the median partial rate of timed-out ones.
    rate: float | None
    #: ok when any repeat drained fully, else the status of the last repeat.
    status: str
    runs: int
    #: Lowest and highest rate among the ok repeats.
    rate_min: float | None = None
    rate_max: float | None = None
    vs_reference: float | None = None
    vs_raw: float | None = None
    #: Per 1000 messages, medians over the ok repeats: what the drain cost. CPU time is
    #: less sensitive than the rate to other load on a shared machine.
    worker_cpu_ms: float | None = None
    emulator_cpu_ms: float | None = None
    receive_calls: float | None = None
    delete_calls: float | None = None


@dataclass
class Row:
    """One contender/setting across handlers."""

    contender: str
    setting: str
    summary: str
    cells: dict[str, Cell] = field(default_factory=dict)


def _per_thousand(runs: Sequence[RunResult], attr: str, scale: float) -> float | None:
    values = [v * scale * 1000 / r.messages for r in runs if (v := getattr(r, attr))]
    return statistics.median(values) if values else None


def _cell(results: Sequence[RunResult]) -> Cell:
    ok_runs = [r for r in results if r.status == "ok" and r.rate]
    if ok_runs:
        rates = [r.rate for r in ok_runs if r.rate]
        return Cell(
            statistics.median(rates),
            "ok",
            len(results),
            rate_min=min(rates),
            rate_max=max(rates),
            worker_cpu_ms=_per_thousand(ok_runs, "worker_cpu_s", 1000),
            emulator_cpu_ms=_per_thousand(ok_runs, "emulator_cpu_s", 1000),
            receive_calls=_per_thousand(ok_runs, "receive_calls", 1),
            delete_calls=_per_thousand(ok_runs, "ack_calls", 1),
        )
    partial = [r.rate for r in results if r.status == "timeout" and r.rate]
    rate = statistics.median(partial) if partial else None
    return Cell(rate, results[-1].status, len(results))


def _ratio(rate: float | None, reference: float | None) -> float | None:
    if rate is None or not reference:
        return None
    return rate / reference


def build_rows(results: Sequence[RunResult], handlers: Sequence[str]) -> list[Row]:
    """Group results by contender/setting (first-seen order) and compute both ratios."""
    rows: dict[tuple[str, str], Row] = {}
    for r in results:
        rows.setdefault((r.contender, r.setting), Row(r.contender, r.setting, r.summary))
    for (contender, setting), row in rows.items():
        for handler in handlers:
            group = [
                r
                for r in results
                if (r.contender, r.setting, r.handler) == (contender, setting, handler)
            ]
            if group:
                row.cells[handler] = _cell(group)
    for handler in handlers:
        reference_row = rows.get(REFERENCE)
        reference_cell = reference_row.cells.get(handler) if reference_row else None
        reference = (
            reference_cell.rate if reference_cell and reference_cell.status == "ok" else None
        )
        raw_rates = [
            cell.rate
            for row in rows.values()
            if row.contender == RAW_CEILING
            and (cell := row.cells.get(handler)) is not None
            and cell.status == "ok"
            and cell.rate
        ]
        raw = max(raw_rates) if raw_rates else None
        for row in rows.values():
            cell = row.cells.get(handler)
            if cell is not None:
                cell.vs_reference = _ratio(cell.rate, reference)
                cell.vs_raw = _ratio(cell.rate, raw)
    return list(rows.values())


def fmt_rate(cell: Cell | None) -> str:
    """A cell's rate; `*` marks one over the part drained before a timeout."""
    if cell is None:
        return "-"
    if cell.rate is None:
        return cell.status
    text = f"{cell.rate:,.0f}"
    # A timed-out run still has a rate over what it drained; flag it.
    return text if cell.status == "ok" else f"{text}*"


def fmt_ratio(ratio: float | None) -> str:
    """A ratio as `1.23x`, `12x` or `0.045x`."""
    if ratio is None:
        return "-"
    if ratio >= 10:
        return f"{ratio:.0f}x"
    # Below 0.1, two significant digits, so a far slower contender does not read as 0.00x.
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _rate_table(rows: Sequence[Row], handlers: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Head and lines: contender, setting, then rate and both ratios per handler."""
    head = ["contender", "setting"]
    for handler in handlers:
        head += [f"{handler} msg/s", "vs runtime", "vs raw"]
    lines = []
    for row in rows:
        line = [row.contender, row.setting]
        for handler in handlers:
            cell = row.cells.get(handler)
            line += [
                fmt_rate(cell),
                fmt_ratio(cell.vs_reference if cell else None),
                fmt_ratio(cell.vs_raw if cell else None),
            ]
        lines.append(line)
    return head, lines


def format_table(rows: Sequence[Row], handlers: Sequence[str]) -> str:
    """A fixed-width table: rate and both ratios per handler, one line per row."""
    head, lines = _rate_table(rows, handlers)
    head.append("what the setting is")
    for line, row in zip(lines, rows, strict=True):
        line.append(row.summary)
    notes = []
    if any(c.status != "ok" and c.rate for row in rows for c in row.cells.values()):
        notes.append("* did not finish: rate over the part drained before the timeout")
    notes.append(
        f"vs runtime: rate / {'/'.join(REFERENCE)}; "
        f"vs raw: rate / fastest {RAW_CEILING} loop (same handler, same run)"
    )
    return "\n".join([table(head, lines, right=range(2, len(head) - 1)), "", *notes])


def format_cost_table(rows: Sequence[Row], handler: str) -> str:
    """Per 1000 messages under one handler: CPU seconds spent and SQS calls made."""
    head = ["contender", "setting", "worker CPU ms", "emulator CPU ms", "receives", "deletes"]
    lines = []

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    for row in rows:
        cell = row.cells.get(handler)
        if cell is None or cell.status != "ok":
            continue
        lines.append(
            [
                row.contender,
                row.setting,
                num(cell.worker_cpu_ms),
                num(cell.emulator_cpu_ms),
                num(cell.receive_calls),
                num(cell.delete_calls),
            ]
        )
    note = "receives: ReceiveMessage calls seen through botocore (kombu polls through pycurl)"
    body = table(head, lines, right=range(2, len(head)))
    return "\n".join([f"Cost per 1000 messages, {handler} handler:", body, "", note])


def plot(path: Path, rows: Sequence[Row], handlers: Sequence[str], title: str) -> None:
    """Horizontal bars of msg/s per row, one bar per handler, on a log scale."""
    import matplotlib  # here, so Agg is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{row.contender} / {row.setting}" for row in rows]
    height = 0.8 / max(1, len(handlers))
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.5))
    for i, handler in enumerate(handlers):
        ys = [n + i * height for n in range(len(rows))]
        cells = [row.cells.get(handler) or Cell(None, "-", 0) for row in rows]
        rates = [cell.rate or 0 for cell in cells]
        # Whiskers from the slowest to the fastest repeat, when there were repeats.
        spread = [
            [(c.rate - c.rate_min) if c.rate and c.rate_min else 0 for c in cells],
            [(c.rate_max - c.rate) if c.rate and c.rate_max else 0 for c in cells],
        ]
        bars = ax.barh(ys, rates, height=height, label=handler, xerr=spread, capsize=2)
        for bar, cell in zip(bars, cells, strict=True):
            y = bar.get_y() + height / 2
            if cell.rate:
                flag = "" if cell.status == "ok" else "*"
                # Past the whisker's end, so the number stays readable.
                at = max(cell.rate, cell.rate_max or 0)
                ax.text(at, y, f" {cell.rate:,.0f}{flag}", va="center", fontsize=8)
            elif cell.runs:
                # Nothing to draw: say why at the axis instead of leaving a silent gap.
                ax.text(
                    0.005, y, f" {cell.status}", va="center", transform=ax.get_yaxis_transform()
                )
    ax.set_yticks([n + height * (len(handlers) - 1) / 2 for n in range(len(rows))], labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    top = max((c.rate_max or c.rate or 0 for row in rows for c in row.cells.values()), default=1)
    # Room on the right for the value labels and the legend.
    ax.set_xlim(right=top * 3)
    ax.set_xlabel("messages/s (log scale; median of repeats, whiskers min-max; * = did not finish)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def drain_markdown(rows: Sequence[Row], handlers: Sequence[str]) -> str:
    """The drain table in Markdown: rate and both ratios per handler."""
    return markdown(*_rate_table(rows, handlers))


def drain_figures(rows: Sequence[Row]) -> dict[str, float | None]:
    """From the drain table: runtime/default, the fastest batched loop, naive, and the
    fastest library (any setting), per handler."""

    def best(contenders: Sequence[str], handler: str) -> float | None:
        rates = [
            cell.rate
            for row in rows
            if row.contender in contenders
            and (cell := row.cells.get(handler)) is not None
            and cell.rate
        ]
        return max(rates) if rates else None

    def runtime(handler: str) -> float | None:
        for row in rows:
            cell = row.cells.get(handler)
            if (row.contender, row.setting) == REFERENCE and cell is not None:
                return cell.rate if cell.status == "ok" else None
        return None

    return {
        "runtime_noop": runtime("no-op"),
        "runtime_io": runtime("5ms-io"),
        "raw_noop": best(["batched"], "no-op"),
        "naive_noop": best(["naive"], "no-op"),
        "libraries_noop": best(LIBRARIES, "no-op"),
        "libraries_io": best(LIBRARIES, "5ms-io"),
    }
