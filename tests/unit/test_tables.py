"""The fixed-width table printer the `pubsub` command and the benchmark share."""

from __future__ import annotations

from pubsub_ops.tables import table


def test_columns_are_padded_to_the_widest_cell_and_right_aligned_where_asked() -> None:
    text = table(("name", "count"), [("orders", "7"), ("dlq", "1200")], right={1})
    assert text.splitlines() == [
        "name    count",
        "------  -----",
        "orders      7",
        "dlq      1200",
    ]


def test_without_a_rule_and_trailing_blanks_trimmed() -> None:
    text = table(("A", "B"), [("long value", "")], rule=False)
    assert text.splitlines() == ["A           B", "long value"]
