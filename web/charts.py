"""Bar charts as plain geometry: the template draws it as SVG, the dashboard script redraws it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

#: Drawing area of every chart, in SVG user units (the SVG scales to its box).
WIDTH = 560
HEIGHT = 220
#: Room for the axis labels under the bars and the value labels above them.
BOTTOM = 24
TOP = 18
#: Room on each side, so the labels of the outer bars are not cut off.
SIDE = 20
GAP = 0.25


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its value and where it is drawn."""

    label: str
    value: float
    text: str
    x: float
    y: float
    width: float
    height: float
    #: Draw the label under the bar (crowded charts label every few, counting from the last).
    show_label: bool


@dataclass(frozen=True)
class Chart:
    """A titled bar chart."""

    title: str
    width: int
    height: int
    baseline: float
    bars: tuple[Bar, ...]

    @property
    def empty(self) -> bool:
        """True when there is nothing to draw."""
        return not any(bar.value for bar in self.bars)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the dashboard's script."""
        return {**asdict(self), "empty": self.empty}


def bar_chart(
    title: str,
    points: Sequence[tuple[str, float]],
    *,
    label_every: int = 1,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """Scale values to the drawing area; the tallest bar reaches the top."""
    baseline = height - BOTTOM
    room = baseline - TOP
    top = max((value for _, value in points), default=0) or 1
    slot = (width - 2 * SIDE) / max(len(points), 1)
    bars = tuple(
        Bar(
            label=label,
            value=value,
            text=f"{value:g}",
            x=round(SIDE + i * slot + slot * GAP / 2, 2),
            y=round(baseline - room * value / top, 2),
            width=round(slot * (1 - GAP), 2),
            height=round(room * value / top, 2),
            show_label=(len(points) - 1 - i) % label_every == 0,
        )
        for i, (label, value) in enumerate(points)
    )
    return Chart(title=title, width=width, height=height, baseline=baseline, bars=bars)


def units_by_sku(summary: dict[str, Any]) -> Chart:
    """Units sold per product."""
    units = summary.get("units_by_sku") or {}
    return bar_chart("Units sold by product", [(sku, float(n)) for sku, n in units.items()])


def orders_per_minute(summary: dict[str, Any], now: datetime, minutes: int = 30) -> Chart:
    """Orders per minute over the last `minutes`, empty minutes included."""
    counts = {row["minute"]: row["orders"] for row in summary.get("orders_per_minute") or []}
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    points = []
    for i in range(minutes):
        minute = (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M")
        points.append((minute[-5:], float(counts.get(minute, 0))))
    return bar_chart("Orders per minute (UTC)", points, label_every=5)
