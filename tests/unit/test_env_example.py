""".env.example: every Settings field, then the variables only docker-compose.yml reads."""

from __future__ import annotations

import re
from pathlib import Path

from pubsub_supervisor.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_MARKER = "# ===== docker-compose.yml only"
PROGRAMS_PART, _, COMPOSE_PART = (ROOT / ".env.example").read_text().partition(COMPOSE_MARKER)
COMPOSE_FILE = (ROOT / "docker-compose.yml").read_text()
#: Read by boto3 itself, not by Settings.
BOTO3_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def assignments(text: str) -> dict[str, str]:
    """NAME=value lines (not comments), in order."""
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE))


def setting_names() -> set[str]:
    """The environment name of every Settings field."""
    names = set()
    for field, info in Settings.model_fields.items():
        choices = getattr(info.validation_alias, "choices", None)
        names.add(str(choices[0] if choices else field).upper())
    return names


def compose_defaults() -> dict[str, str]:
    """${NAME:-default} and ${NAME} in docker-compose.yml: name -> default."""
    found = re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}", COMPOSE_FILE)
    return {name: default for name, default in found}


def test_the_compose_section_is_there_and_last() -> None:
    assert COMPOSE_PART, f"{COMPOSE_MARKER!r} is missing from .env.example"


def test_the_programs_part_lists_exactly_the_settings() -> None:
    assert set(assignments(PROGRAMS_PART)) == setting_names() | BOTO3_VARIABLES


def test_the_compose_part_lists_exactly_what_only_compose_reads() -> None:
    compose_only = set(compose_defaults()) - setting_names()
    assert set(assignments(COMPOSE_PART)) == compose_only


def test_the_compose_part_shows_the_compose_defaults() -> None:
    defaults = compose_defaults()
    for name, value in assignments(COMPOSE_PART).items():
        if name == "APP_IMAGE":
            # Empty: `make up` and the scripts name one image per checkout.
            assert value == "", value
            continue
        assert value == defaults[name], name
