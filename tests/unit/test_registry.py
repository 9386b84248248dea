"""The service registry, and what follows from it: settings, topology, stores, programs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable

from pubsub_supervisor import idempotency, registry
from pubsub_supervisor.migrate import MIGRATIONS, head
from pubsub_supervisor.registry import SERVICES, ServiceSpec
from pubsub_supervisor.settings import SERVICE_NAMES, STORE_NAMES
from pubsub_supervisor.topology import EMAIL_SENDS, build_topology

ROOT = Path(__file__).resolve().parents[2]


def test_settings_name_the_registered_services_and_their_stores() -> None:
    # The project's own three come first; a project that adds one (README.md) has more.
    assert SERVICE_NAMES[:3] == ("email", "inventory", "analytics")
    assert registry.names() == SERVICE_NAMES
    assert STORE_NAMES[:4] == ("web", "email", "inventory", "analytics")
    assert ("web", *(s.name for s in SERVICES if s.has_store)) == STORE_NAMES


def test_names_follow_from_the_service_name() -> None:
    spec = ServiceSpec(name="shipping", handler="services.shipping.handler:build")
    assert (spec.queue, spec.dlq, spec.program, spec.store) == (
        "shipping",
        "shipping-dlq",
        "shipping_service",
        "shipping",
    )
    assert spec.command == ("-m", "services", "shipping")
    assert ServiceSpec(name="x", handler="a:b", has_store=False).store is None


@pytest.mark.parametrize("name", ["", "ship-ping", "ship ping", "web", "email-sends"])
def test_a_name_that_cannot_name_a_queue_program_and_store_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="service name"):
        ServiceSpec(name=name, handler="a:b")


def test_get_names_the_known_services_when_it_fails() -> None:
    assert registry.get("inventory").name == "inventory"
    with pytest.raises(KeyError, match="known: email, inventory, analytics"):
        registry.get("nowhere")


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_handlers_and_projections_resolve(spec: ServiceSpec) -> None:
    build = registry.resolve(spec.handler)
    assert callable(build)
    if spec.projection:
        assert callable(registry.resolve(spec.projection))


def test_resolve_says_how_to_write_an_import_path() -> None:
    with pytest.raises(ValueError, match=r"package\.module:attribute"):
        registry.resolve("services.inventory.handler.InventoryService")
    with pytest.raises(ModuleNotFoundError):
        registry.resolve("services.nowhere:build")


def test_the_topology_has_a_queue_and_dlq_per_service_and_ses_events_where_asked() -> None:
    shipping = ServiceSpec(name="shipping", handler="services.shipping.handler:build")
    topology = build_topology(prefix="t", services=(*SERVICES[:3], shipping))
    assert topology.queue_for("shipping").name == "t-shipping"
    assert topology.queue_for("shipping").dlq_name == "t-shipping-dlq"
    assert topology.queue_for("shipping").topic == topology.order_topic
    assert topology.queue_for(EMAIL_SENDS).topic == topology.email_sends_topic
    without_email = build_topology(prefix="t", services=("inventory", shipping))
    assert without_email.email_sends_topic is None
    assert [q.consumer for q in without_email.queues] == ["inventory", "shipping", "web"]


def test_the_default_topology_is_the_registry() -> None:
    assert build_topology(prefix="t") == build_topology(prefix="t", services=SERVICE_NAMES)


@pytest.mark.parametrize("store", STORE_NAMES)
def test_every_store_has_its_migrations(store: str) -> None:
    assert (MIGRATIONS / "versions" / store).is_dir()
    assert head(store)


#: processed_events as the three baselines wrote it before they shared its definition.
LEGACY = sa.Table(
    "processed_events",
    sa.MetaData(),
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True)),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
)


DIALECTS = [sqlite.dialect(), postgresql.dialect()]  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("dialect", DIALECTS, ids=["sqlite", "postgresql"])
def test_the_shared_idempotency_table_has_the_ddl_of_the_old_baselines(
    dialect: sa.Dialect,
) -> None:
    shared = sa.Table(idempotency.TABLE, sa.MetaData(), *idempotency.columns())
    assert str(CreateTable(shared).compile(dialect=dialect)) == str(
        CreateTable(LEGACY).compile(dialect=dialect)
    )


def test_every_service_baseline_creates_the_table_from_the_one_definition() -> None:
    for spec in SERVICES:
        assert spec.store
        baseline = next((MIGRATIONS / "versions" / spec.store).glob("*0001_*.py")).read_text()
        assert "op.create_table(idempotency.TABLE, *idempotency.columns())" in baseline
        assert 'sa.Column("event_id"' not in baseline


def test_a_migrated_store_has_the_table_the_service_uses(tmp_path: Path) -> None:
    from pubsub_supervisor.db import make_engine
    from pubsub_supervisor.migrate import migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'inventory.sqlite3'}")
    migrate(engine, "inventory")
    columns = {c["name"] for c in sa.inspect(engine).get_columns(idempotency.TABLE)}
    assert columns == {c.name for c in idempotency.processed_events.columns}
    engine.dispose()


def test_the_program_entry_refuses_an_unknown_service() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services", "nowhere"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "no service 'nowhere' in pubsub_supervisor/registry.py" in result.stderr


def test_a_handler_path_resolves_to_the_build_classmethod() -> None:
    build = registry.resolve(registry.get("analytics").handler)
    assert build.__qualname__ == "AnalyticsService.build"
