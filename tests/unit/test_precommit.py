""".pre-commit-config.yaml runs the commands of `make lint` and `make typecheck`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG: dict[str, Any] = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())


def recipe(target: str) -> list[str]:
    """The command lines of a Makefile target, $(VENV) spelled out."""
    makefile = (ROOT / "Makefile").read_text()
    body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert body, f"make {target} is missing"
    return [line.strip().replace("$(VENV)", ".venv") for line in body.group(1).splitlines()]


def hooks() -> list[dict[str, Any]]:
    [repo] = CONFIG["repos"]
    assert repo["repo"] == "local"
    found: list[dict[str, Any]] = repo["hooks"]
    return found


def test_every_hook_is_a_make_lint_or_typecheck_command() -> None:
    commands = {line.removesuffix(" .") for line in recipe("lint") + recipe("typecheck")}
    entries = {hook["entry"].removesuffix(" --force-exclude") for hook in hooks()}
    assert entries == commands


def test_hooks_use_the_locked_virtualenv_and_fetch_nothing() -> None:
    for hook in hooks():
        assert hook["language"] == "system", hook["id"]
        assert hook["entry"].startswith(".venv/bin/"), hook["id"]
