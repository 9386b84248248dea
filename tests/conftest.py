"""Fixtures shared by every tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pubsub_supervisor.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

#: The real-stack fixtures (emulator, stack, api...) and their factories.
pytest_plugins = ["tests.support.fixtures"]

# The tests build their own settings; a developer's .env must not leak into them.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own data directory, no .env file."""
    return Settings(_env_file=None, data_dir=tmp_path / "data", aws_endpoint_url=None)  # type: ignore[call-arg]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment for moto's in-process mock (unit tests only)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
