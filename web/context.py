"""What the web's programs share: settings, store, catalog and AWS clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine

from pubsub_supervisor.catalog import Product, load_catalog
from pubsub_supervisor.clients import AwsClients, arns_for, make_clients
from pubsub_supervisor.db import make_engine
from pubsub_supervisor.settings import Settings
from web import store
from web.dashboard import Dashboard


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

    def close(self) -> None:
        """Close pooled database connections (tests, shutdown)."""
        if "engine" in self.__dict__:
            self.engine.dispose()
