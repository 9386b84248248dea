"""What the web's programs share: settings, store, catalog and AWS clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine

from pubsub_supervisor import metrics
from pubsub_supervisor.catalog import Product, load_catalog
from pubsub_supervisor.clients import READINESS_AGENT, AwsClients, arns_for, make_clients
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.settings import Settings
from web import store
from web.dashboard import Dashboard
from web.outbox import CommitPublisher, OutboxRelay


@dataclass
class WebContext:
    """Built once per process from the settings."""

    settings: Settings
    #: Clients made already (the program runner's); None: made from the settings.
    clients: AwsClients | None = field(default=None, repr=False)

    @cached_property
    def engine(self) -> Engine:
        """The web's store, schema created."""
        engine = make_engine(self.settings.database_url("web"))
        store.create_schema(engine)
        return engine

    @cached_property
    def catalog(self) -> dict[str, Product]:
        """Products by SKU."""
        return load_catalog(self.settings.catalog_path)

    @cached_property
    def aws(self) -> AwsClients:
        """Clients for the configured endpoint."""
        return self.clients or make_clients(self.settings)

    @cached_property
    def probe(self) -> AwsClients:
        """Clients that fail fast, for readiness checks."""
        return make_clients(self.settings, pool=4, probe=True)

    @cached_property
    def readiness(self) -> AwsClients:
        """Probe clients for /readyz alone, marked so the emulator's console skips them."""
        return make_clients(self.settings, pool=2, probe=True, agent=READINESS_AGENT)

    @cached_property
    def topic_arns(self) -> dict[str, str]:
        """ARNs of the topology's topics, by name (and by outbox key)."""
        arns = arns_for(self.aws, self.settings.aws_region)
        topology = self.settings.topology
        by_name = {name: arns.topic(name) for name in topology.topics}
        return {**by_name, store.ORDER_EVENTS: by_name[topology.order_topic]}

    @cached_property
    def dashboard(self) -> Dashboard:
        """Reads queue depths, consumer counters and the outbox for the dashboard."""
        return Dashboard(self.settings, self.engine, self.probe.sqs)

    @cached_property
    def commit_publisher(self) -> CommitPublisher | None:
        """Publishes each order's event right after its commit (None: the relay's poll only)."""
        if not self.settings.outbox_publish_on_commit:
            return None
        settings = self.settings

        def relay() -> OutboxRelay:
            return OutboxRelay(
                self.engine,
                self.aws.sns,
                self.topic_arns,
                claim_seconds=settings.outbox_claim_seconds,
                on_published=metrics.OUTBOX_PUBLISHED.labels(program=settings.program_name).inc,
                on_failed=metrics.OUTBOX_FAILURES.labels(program=settings.program_name).inc,
            )

        return CommitPublisher(relay)

    def close(self) -> None:
        """Stop publishing, then close pooled database connections (tests, shutdown)."""
        publisher = self.__dict__.get("commit_publisher")
        if publisher is not None:
            publisher.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
