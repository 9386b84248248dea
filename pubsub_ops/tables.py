"""Fixed-width text tables, for the `pubsub` command and the benchmark."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    right: Collection[int] = (),
    rule: bool = True,
) -> str:
    """Columns padded to their widest cell, two spaces apart; columns in `right` right-aligned.

    With `rule`, a line of dashes under the head.
    """
    lines = [list(head), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]

    def render(line: list[str]) -> str:
        return "  ".join(
            text.rjust(width) if i in right else text.ljust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()

    out = [render(line) for line in lines]
    if rule:
        out.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(out)
