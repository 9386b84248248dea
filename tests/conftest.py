"""Fixtures shared by every tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.postgres import find_bin_dir, throwaway
from pubsub_supervisor.settings import Settings
from tests.support.postgres import fresh_database

ROOT = Path(__file__).resolve().parent.parent

#: The real-stack fixtures (emulator, stack, api...) and their factories.
pytest_plugins = ["tests.support.fixtures"]

# The tests build their own settings; a developer's .env must not leak into them.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
# Each test picks its store itself (SQLite, or PostgreSQL from TEST_POSTGRES_URL or a
# throwaway cluster): a DATABASE_URL left in the environment must not switch them.
os.environ.pop("DATABASE_URL", None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own data directory, no .env file."""
    return Settings(_env_file=None, data_dir=tmp_path / "data", aws_endpoint_url=None)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL server a test may create databases on.

    TEST_POSTGRES_URL when set (CI sets it), else a throwaway cluster started here.
    """
    given = os.environ.get("TEST_POSTGRES_URL")
    if given:
        yield given
        return
    if find_bin_dir() is None:
        message = (
            "PostgreSQL is not installed: apt-get install postgresql (the tests then start "
            "a throwaway cluster), or set TEST_POSTGRES_URL to a server's URL"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with throwaway() as server:
        yield server.url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test (dropped afterwards)."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment for moto's in-process mock (unit tests only)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
