"""Figures as text and the results file: numbers, fixed-width and Markdown tables, JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from bench.core.stats import Latency


def markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table in Markdown."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def ms(latency: Latency | None, attr: str) -> str:
    """A percentile in whole milliseconds."""
    return "-" if latency is None else f"{getattr(latency, attr) * 1000:,.0f}"


def rate(value: float | None, digits: int = 0) -> str:
    """A rate, or '-'."""
    return "-" if value is None else f"{value:,.{digits}f}"


def jsonable(value: Any) -> Any:
    """Dataclasses (nested) as dicts, for the results file."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write a JSON document, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
