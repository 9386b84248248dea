"""Schema migrations of every store (alembic), safe when several programs start at once.

Each store has its own linear history in `migrations/versions/<store>/` and its own
`alembic_version` table (in its SQLite file, or in its PostgreSQL schema). Every program
migrates its store at start, inside one write transaction: on PostgreSQL under an
advisory lock, on SQLite under the database's write lock. The first program applies the
revisions; the others wait for it, then find the store at head and change nothing.
"""

from __future__ import annotations

import functools
import logging
import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from pubsub_supervisor import db

log = logging.getLogger(__name__)
# Alembic announces its context on every start of every program; our own line says what
# changed. Its warnings and errors still show.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"


def _config(store: str, conn: Connection | None = None, schema: str | None = None) -> Config:
    versions = MIGRATIONS / "versions" / store
    if not versions.is_dir():
        raise ValueError(f"no migrations for store {store!r} (looked in {versions})")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(versions))
    config.attributes["connection"] = conn
    config.attributes["schema"] = schema
    return config


@functools.cache
def head(store: str) -> str:
    """The newest revision of a store's history."""
    revision = ScriptDirectory.from_config(_config(store)).get_current_head()
    if revision is None:
        raise ValueError(f"store {store!r} has no revisions")
    return revision


def _lock_key(schema: str) -> int:
    # A stable key per schema (crc32 fits the bigint that advisory locks take).
    return zlib.crc32(f"pubsub-migrate:{schema}".encode())


def current(engine: Engine) -> str | None:
    """The revision a store is at (None: not migrated yet)."""
    with db.read(engine) as conn:
        return MigrationContext.configure(
            conn, opts={"version_table_schema": db.schema_of(engine)}
        ).get_current_revision()


def migrate(engine: Engine, store: str, to: str | None = None) -> str:
    """Bring a store's schema to head (or to revision `to`); returns the revision before."""
    schema = db.schema_of(engine)
    newest = to or head(store)  # read the scripts before taking the lock
    with db.write(engine) as conn:
        if schema is not None:
            # Held until this transaction ends: a program starting alongside waits here.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(schema)})
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        config = _config(store, conn, schema)
        context = MigrationContext.configure(conn, opts={"version_table_schema": schema})
        before = context.get_current_revision()
        if before is None and _has_tables(conn, schema):
            # A store created before it had migrations: its tables are the first revision's.
            base = ScriptDirectory.from_config(config).get_base()
            log.info("store predates migrations; stamping", extra={"store": store, "rev": base})
            command.stamp(config, base or "base")
            before = base
        if before != newest:
            log.info("migrating store", extra={"store": store, "from": before, "to": newest})
            command.upgrade(config, newest)
    return before or "base"


def _has_tables(conn: Connection, schema: str | None) -> bool:
    tables = set(inspect(conn).get_table_names(schema=schema)) - {VERSION_TABLE}
    return bool(tables)
