"""The README's "What happens when..." names tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## What happens when...")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def test_every_test_named_in_the_guarantees_exists() -> None:
    named = set(re.findall(r"`(test_\w+)`", section()))
    assert len(named) >= 8
    defined: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)\(", path.read_text(), flags=re.MULTILINE))
    assert named - defined == set()
