"""Read the programs' log files (one per program, JSON lines): one order's path through
every program (`pubsub trace`), and every program's log as one stream (`pubsub logs`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pubsub_supervisor.supervision.log_forwarder import WIDTH

#: Where supervisord writes the programs' logs when PUBSUB_LOG_DIR is unset (`make dev`).
DEFAULT_LOG_DIR = Path("var") / "log"
#: The ids a trace follows (pubsub_supervisor/logs.py binds them to every line).
IDS = ("order_id", "trace_id")
#: Fields worth showing after a line's message, when present.
DETAILS = ("service", "status", "reason", "attempts", "error", "queue", "path", "method")


def log_dir(environ: dict[str, str] | None = None) -> Path:
    """PUBSUB_LOG_DIR, or var/log in the current folder (where `make dev` writes)."""
    value = (environ if environ is not None else dict(os.environ)).get("PUBSUB_LOG_DIR")
    return Path(value) if value else DEFAULT_LOG_DIR


def log_files(directory: Path) -> list[Path]:
    """Every program's log, with its rotated copies (supervisord's own log is no program's)."""
    return sorted(
        p for p in directory.glob("*.log*") if p.is_file() and not p.name.startswith("supervisord")
    )


def records(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """The JSON lines of the files (tracebacks and other plain lines are skipped)."""
    for path in paths:
        with path.open(errors="replace") as lines:
            for line in lines:
                if not line.startswith("{"):
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "time" in record:
                    yield record


def matching(all_records: Iterable[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    """The lines of order or trace `wanted`, in time order; an order's lines bring in the
    other lines of its traces (the web's request line carries only the trace id)."""
    pool = list(all_records)
    traces = {r["trace_id"] for r in pool if wanted in (r.get("order_id"), r.get("trace_id"))}
    traces.discard(None)
    found = [
        r for r in pool if r.get("order_id") == wanted or r.get("trace_id") in traces | {wanted}
    ]
    return sorted(found, key=lambda r: str(r["time"]))


@dataclass(frozen=True)
class Line:
    """One line of a trace, ready to print."""

    offset: float
    program: str
    message: str
    details: str


def lines(found: list[dict[str, Any]]) -> list[Line]:
    """Each record with its time since the first one."""
    if not found:
        return []
    start = _when(found[0])
    out = []
    for record in found:
        details = " ".join(
            f"{k}={record[k]}" for k in DETAILS if record.get(k) not in (None, "", [])
        )
        out.append(
            Line(
                _when(record) - start,
                str(record.get("program", "?")),
                str(record.get("message", "")),
                details,
            )
        )
    return out


def _when(record: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(record["time"])).timestamp()
    except ValueError:
        return 0.0


def render(wanted: str, found: list[dict[str, Any]], out: TextIO) -> None:
    """Print the trace: when it started, then every line with its time since the first."""
    first = found[0]
    programs = sorted({str(r.get("program", "?")) for r in found})
    out.write(
        f"{wanted}: {len(found)} log lines from {len(programs)} programs "
        f"({', '.join(programs)}), starting {first['time']}\n"
    )
    for line in lines(found):
        offset = f"+{line.offset:.3f}s"
        text = f"  {offset:>9}  {line.program:<{WIDTH}} {line.message}"
        out.write(f"{text}  {line.details}\n" if line.details else f"{text}\n")


def follow(
    directory: Path,
    out: TextIO,
    *,
    backlog: int = 10,
    keep_going: Callable[[], bool] = lambda: True,
    interval: float = 0.2,
) -> None:
    """Print the last `backlog` lines of every program's log, then new lines as they come,
    each as `program | line`; a rotated or new file is picked up."""
    positions: dict[Path, tuple[int, int]] = {}  # path -> (inode, offset)
    first = True
    while True:
        for path in sorted(directory.glob("*.log")):
            try:
                stat = path.stat()
            except OSError:
                continue
            inode, offset = positions.get(path, (stat.st_ino, -1))
            if inode != stat.st_ino or stat.st_size < offset:
                offset = 0  # rotated or truncated: read the new file from its start
            with path.open("rb") as handle:
                if offset < 0:
                    text = handle.read().decode(errors="replace") if first else ""
                    tail = text.splitlines()[-backlog:] if backlog else []
                    offset = handle.tell()
                else:
                    handle.seek(offset)
                    chunk = handle.read()
                    # Only whole lines; the rest is read once its newline is written.
                    whole = chunk[: chunk.rfind(b"\n") + 1]
                    tail = whole.decode(errors="replace").splitlines()
                    offset += len(whole)
            positions[path] = (stat.st_ino, offset)
            name = path.name.removesuffix(".log")
            for text_line in tail:
                out.write(f"{name:<{WIDTH}}| {text_line}\n")
        out.flush()
        first = False
        if not keep_going():
            return
        time.sleep(interval)
