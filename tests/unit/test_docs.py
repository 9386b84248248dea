"""The AWS walk-through names commands, targets and files that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pubsub_ops import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "deploy-aws.md", ROOT / "docs" / "emulator-parity.md"]


def text() -> str:
    return "\n".join(path.read_text() for path in DOCS)


def pubsub_commands() -> list[list[str]]:
    """Every `pubsub ...` command line in the docs, as argv after `pubsub`."""
    found: list[list[str]] = []
    commands = "provision|lint-topology|iam-policy|template"
    for match in re.finditer(rf"(?:\.venv/bin/)?\bpubsub ((?:{commands})[^`\n>|]*)", text()):
        argv = shlex.split(match.group(1).strip(), comments=True)
        if argv not in found:
            found.append(argv)
    return found


def test_docs_mention_every_new_command() -> None:
    commands = {argv[0] for argv in pubsub_commands()}
    assert commands == {"provision", "lint-topology", "iam-policy", "template"}


@pytest.mark.parametrize("argv", pubsub_commands(), ids=" ".join)
def test_every_pubsub_command_in_the_docs_parses(argv: list[str]) -> None:
    cli.build_parser().parse_args(argv)


def test_every_make_target_in_the_docs_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.MULTILINE))
    mentioned = set(re.findall(r"`make ([a-z-]+)", text()))
    assert mentioned
    assert mentioned <= targets


def test_every_project_file_in_the_docs_exists() -> None:
    paths = set(
        re.findall(
            r"\b((?:deploy|docs|scripts|ministack|tests|pubsub_supervisor)/[\w./-]+\w)", text()
        )
    )
    assert paths
    # Folders the tests create (screenshots, results) are named but not committed.
    generated = {"tests/browser/artifacts", "bench/results"}
    # "Add your own service" names the files its reader adds for the `shipping` example.
    example = {p for p in paths if "/shipping" in p}
    missing = sorted(p for p in paths - generated - example if not (ROOT / p).exists())
    assert missing == []
