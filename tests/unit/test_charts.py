"""Bar chart geometry for the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime

from web.charts import HEIGHT, TOP, WIDTH, bar_chart, orders_per_minute, units_by_sku


def test_tallest_bar_reaches_the_top_and_the_rest_scale() -> None:
    chart = bar_chart("t", [("a", 4), ("b", 2), ("c", 0)])
    a, b, c = chart.bars
    assert a.y == TOP
    assert a.height == chart.baseline - TOP
    assert b.height == a.height / 2
    assert c.height == 0
    assert [bar.text for bar in chart.bars] == ["4", "2", "0"]
    # Bars stay inside the drawing and do not overlap.
    assert a.x > 0
    assert c.x + c.width < WIDTH
    assert a.x + a.width < b.x < b.x + b.width < c.x
    assert not chart.empty


def test_nothing_to_draw_is_an_empty_chart() -> None:
    assert bar_chart("t", []).empty
    assert units_by_sku({}).empty
    zero = bar_chart("t", [("a", 0)])
    assert zero.empty
    assert zero.bars[0].y == zero.baseline == HEIGHT - 24


def test_orders_per_minute_fills_the_quiet_minutes() -> None:
    now = datetime(2026, 11, 27, 9, 41, 30, tzinfo=UTC)
    summary = {
        "orders_per_minute": [
            {"minute": "2026-11-27T09:41", "orders": 3},
            {"minute": "2026-11-27T09:30", "orders": 1},
            {"minute": "2026-11-27T08:00", "orders": 9},  # outside the window
        ]
    }
    chart = orders_per_minute(summary, now, minutes=30)
    assert len(chart.bars) == 30
    assert chart.bars[0].label == "09:12"
    assert chart.bars[-1].label == "09:41"
    assert chart.bars[-1].value == 3
    assert [b.value for b in chart.bars].count(0) == 28
    # Labelled every five minutes, back from the current one.
    assert [b.label for b in chart.bars if b.show_label] == [
        "09:16",
        "09:21",
        "09:26",
        "09:31",
        "09:36",
        "09:41",
    ]
    assert chart.to_json()["bars"][-1]["value"] == 3
