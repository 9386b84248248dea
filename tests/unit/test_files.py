"""The stores' SQLite files and the web's secret key are readable by their owner only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from pubsub_supervisor import files
from pubsub_supervisor.db import make_engine, write
from pubsub_supervisor.settings import Settings
from web.security import KEY_FILENAME, secret_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """The usual umask (022) would make new files world-readable."""
    previous = os.umask(0o022)
    yield None
    os.umask(previous)


def test_a_new_sqlite_store_and_its_folder_are_owner_only(tmp_path: Path) -> None:
    database = tmp_path / "data" / "web.sqlite3"
    engine = make_engine(f"sqlite:///{database}")
    with write(engine) as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    made = [database, *database.parent.glob("web.sqlite3-*")]
    assert {p.name for p in made} >= {"web.sqlite3", "web.sqlite3-wal", "web.sqlite3-shm"}
    assert {p.name: mode(p) for p in made} == {p.name: 0o600 for p in made}
    assert mode(database.parent) == 0o700
    engine.dispose()


def test_an_existing_store_of_ours_is_tightened_and_a_folder_left_alone(tmp_path: Path) -> None:
    database = tmp_path / "inventory.sqlite3"
    database.touch(mode=0o644)
    tmp_path.chmod(0o755)
    make_engine(f"sqlite:///{database}").dispose()
    assert mode(database) == 0o600
    # A folder that was there before is the operator's to set.
    assert mode(tmp_path) == 0o755


def test_the_generated_secret_key_is_owner_only(settings: Settings) -> None:
    secret_key(settings)
    path = settings.data_dir / KEY_FILENAME
    assert mode(path) == 0o600


def test_an_existing_secret_key_is_tightened(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / KEY_FILENAME
    path.write_text("k" * 40)
    path.chmod(0o644)
    assert secret_key(settings) == "k" * 40
    assert mode(path) == 0o600


def test_private_dir_makes_only_the_last_folder_owner_only(tmp_path: Path) -> None:
    files.private_dir(tmp_path / "a" / "b")
    assert mode(tmp_path / "a" / "b") == 0o700
    files.private_dir(tmp_path / "a" / "b")  # already there: nothing to do
