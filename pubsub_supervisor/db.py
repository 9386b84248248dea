"""SQLAlchemy engines for the project's stores: SQLite tuned for many threads, or PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from pubsub_supervisor import files

#: Execution option that makes a SQLite transaction take the write lock at BEGIN.
_WRITE = "pubsub_write"


#: How long a connection keeps trying to switch a new database to WAL.
WAL_SWITCH_SECONDS = 10.0


def _enable_wal(cursor: Any) -> None:
    """Switch the database to WAL (it stays so). Programs that start together open a new
    file at once, and SQLite answers "database is locked" to all but one switch without
    waiting for its busy timeout: try again until the first switch is done."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _create_engine(url: str, **options: Any) -> Engine:
    # Looked up on each call, not imported: the SQLAlchemy instrumentation (tracing.py)
    # wraps `sqlalchemy.create_engine` after this module was imported.
    return sqlalchemy.create_engine(url, **options)


def make_engine(url: str) -> Engine:
    """An engine for `url`; for SQLite: WAL, a busy timeout and explicit BEGIN modes."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # READ COMMITTED (PostgreSQL's default): concurrent writers are kept apart by row
        # locks (SELECT ... FOR UPDATE), unique keys and ON CONFLICT, not by retries.
        return _create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    if (
        parsed.database
        and parsed.database != ":memory:"
        and not parsed.database.startswith("file:")
    ):
        # Created before SQLite opens it: SQLite gives its -wal and -shm files the same mode.
        database = Path(parsed.database)
        files.private_dir(database.parent)
        files.private_file(database)
    engine = _create_engine(url, pool_size=16, max_overflow=16)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's `begin` event issue BEGIN itself (pysqlite's own is unreliable).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=10000")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the lock up front, so read-then-write transactions never fail
        # to upgrade their lock; readers stay concurrent under WAL.
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed on success, rolled back on error."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction."""
    with engine.connect() as conn, conn.begin():
        yield conn


def schema_of(engine: Engine) -> str | None:
    """The PostgreSQL schema an engine's search_path selects (None for SQLite)."""
    if engine.dialect.name == "sqlite":
        return None
    options = str(engine.url.query.get("options", ""))
    for option in options.split():
        name, _, value = option.removeprefix("-c").partition("=")
        if name == "search_path":
            return value.split(",")[0].strip()
    return "public"


def insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with ON CONFLICT clauses, in the dialect of `conn` (PostgreSQL or SQLite)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
