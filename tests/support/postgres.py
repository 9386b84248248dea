"""Fresh PostgreSQL databases for tests, on a server the fixtures provide."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def psycopg_url(url: str) -> str:
    """The same URL with the psycopg 3 driver (TEST_POSTGRES_URL may say postgresql://)."""
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "pubsub_test") -> Iterator[str]:
    """Create an empty database on the server; yield its URL; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(psycopg_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(psycopg_url(server_url))
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
