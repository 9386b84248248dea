"""`pubsub new-service NAME`: the four files of a new service, as README.md's "Add your own
service" describes them: its handler, its registry entry, its supervisord block and its
store's first migration. The handler records each order once; its effect is yours to write.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from pubsub_supervisor.registry import ServiceSpec

REGISTRY = Path("pubsub_supervisor/registry.py")
CONF = Path("supervisord.conf")
SERVICES_LINE = "SERVICES: tuple[ServiceSpec, ...] = ("

HANDLER = Template('''\
"""The $name service: records each order once; write its own effect in `_handle`."""

from __future__ import annotations

from sqlalchemy import Column, Connection, DateTime, Engine, Integer, MetaData, String, Table

from pubsub_supervisor import db, idempotency
from pubsub_supervisor.clients import AwsClients
from pubsub_supervisor.events import OrderCreated, utcnow
from pubsub_supervisor.idempotency import Outcome
from pubsub_supervisor.migrate import migrate
from pubsub_supervisor.settings import Settings

#: The DDL is in pubsub_supervisor/migrations/versions/$name.
handled_orders = Table(
    "handled_orders",
    MetaData(),
    Column("order_id", String(32), primary_key=True),
    Column("units", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class $cls:
    """Handles each order once: a repeated event changes nothing."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine, "$name")

    @classmethod
    def build(cls, settings: Settings, _clients: AwsClients) -> $cls:
        """From the settings."""
        return cls(db.make_engine(settings.database_url("$name")))

    def __call__(self, event: OrderCreated) -> Outcome:
        """Handle the order unless this event was handled already."""
        outcome, _first = idempotency.once(
            self.engine, event.event_id, event.order_id, lambda conn: self._handle(conn, event)
        )
        return outcome

    def _handle(self, conn: Connection, event: OrderCreated) -> Outcome:
        units = sum(item.quantity for item in event.items)
        query = db.insert(conn, handled_orders).values(
            order_id=event.order_id, units=units, created_at=utcnow()
        )
        conn.execute(query.on_conflict_do_nothing(index_elements=["order_id"]))
        return Outcome("processed", reason=f"{units} unit(s) handled")
''')

MIGRATION = Template('''\
"""The $name service's store: handled orders and idempotency records.

Revision ID: ${name}0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pubsub_supervisor import idempotency

revision = "${name}0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "handled_orders",
        sa.Column("order_id", sa.String(32), primary_key=True),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(idempotency.TABLE, *idempotency.columns())


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table(idempotency.TABLE)
    op.drop_table("handled_orders")
''')

PROGRAM = Template("""\
[program:${name}_service]
command=%(ENV_PUBSUB_VENV)s/bin/python -m services $name
directory=%(ENV_PUBSUB_HOME)s
environment=PROGRAM_NAME="%(program_name)s",PYTHONUNBUFFERED="1",PROMETHEUS_MULTIPROC_DIR="%(ENV_PUBSUB_RUN_DIR)s/metrics"
priority=300
autostart=true
autorestart=true
startsecs=10
startretries=5
stopsignal=TERM
stopwaitsecs=15
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=%(ENV_PUBSUB_LOG_DIR)s/%(program_name)s.log
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=3
stdout_events_enabled=true

""")


class ScaffoldError(Exception):
    """The service cannot be added as asked; the message says what to change."""


@dataclass(frozen=True)
class Scaffold:
    """What `new_service` wrote: the files it created and those it added to."""

    created: tuple[Path, ...]
    edited: tuple[Path, ...]


def class_name(name: str) -> str:
    """`gift_wrap` -> `GiftWrapService`."""
    return "".join(part.capitalize() for part in name.split("_")) + "Service"


def handler_path(name: str) -> Path:
    """Where the handler module goes."""
    return Path("services") / f"{name}.py"


def migration_path(name: str) -> Path:
    """Where the store's first migration goes."""
    return Path("pubsub_supervisor/migrations/versions") / name / f"{name}0001_baseline.py"


def _check(root: Path, name: str) -> None:
    if not (name.isidentifier() and name.islower() and not keyword.iskeyword(name)):
        raise ScaffoldError(
            f"service name {name!r}: use lower-case letters, digits and '_', starting with a "
            "letter (it names a Python module)"
        )
    ServiceSpec(name=name, handler=f"services.{name}:{class_name(name)}.build")
    for path in (REGISTRY, CONF):
        if not (root / path).is_file():
            raise ScaffoldError(
                f"{root / path} not found: run from the project's root or pass --root"
            )
    registry = (root / REGISTRY).read_text()
    if re.search(rf'ServiceSpec\(\s*name="{name}"', registry):
        raise ScaffoldError(f"{name!r} is already in {REGISTRY}: pick another name")
    if f"[program:{name}_service]" in (root / CONF).read_text():
        raise ScaffoldError(f"{CONF} already has [program:{name}_service]: pick another name")
    for path in (handler_path(name), migration_path(name), root / "services" / name):
        if (root / path).exists():
            raise ScaffoldError(f"{root / path} exists already: pick another name or remove it")


def _add_to_registry(text: str, name: str) -> str:
    start = text.find(SERVICES_LINE)
    end = text.find("\n)\n", start)
    if start < 0 or end < 0:
        raise ScaffoldError(f"{REGISTRY}: no `{SERVICES_LINE} ... )` to add the entry to")
    entry = f'    ServiceSpec(name="{name}", handler="services.{name}:{class_name(name)}.build"),'
    return text[:end] + "\n" + entry + text[end:]


def _add_program(text: str, name: str) -> str:
    # Beside the other programs: before the event listeners, or at the end.
    block = PROGRAM.substitute(name=name)
    at = text.find("\n[eventlistener:")
    if at < 0:
        return text.rstrip("\n") + "\n\n" + block
    return text[: at + 1] + block + text[at + 1 :]


def new_service(root: Path, name: str) -> Scaffold:
    """Write the four files of service `name` under the project folder `root`."""
    _check(root, name)
    handler, migration = handler_path(name), migration_path(name)
    (root / handler).write_text(HANDLER.substitute(name=name, cls=class_name(name)))
    (root / migration).parent.mkdir(parents=True)
    (root / migration).write_text(MIGRATION.substitute(name=name))
    (root / REGISTRY).write_text(_add_to_registry((root / REGISTRY).read_text(), name))
    (root / CONF).write_text(_add_program((root / CONF).read_text(), name))
    return Scaffold(created=(handler, migration), edited=(REGISTRY, CONF))
