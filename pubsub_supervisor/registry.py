"""The one declaration of the order services: everything else about a service follows from it.

Settings (`SERVICE_NAMES`, `STORE_NAMES`), the topology and the emulator's provisioning hook,
the IAM policy, the healthcheck, the scale-out compose file, the dashboard, the web's result
projection and the program entry point (`python -m services NAME`) all read `SERVICES`.
`supervisord.conf` is written by hand; tests/unit/test_supervisord_conf.py fails when it
and this tuple disagree. To add a service, see README.md, "Add your own service".

Standard library only: the LocalStack init hook imports it from the emulator's interpreter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServiceSpec:
    """One order service: its name, handler, store and how the web shows its result."""

    #: Letters, digits and `_`: it names the queue, the program and the store.
    name: str
    #: `module:attribute` of a `(Settings, AwsClients) -> OrderService` callable.
    handler: str
    #: True when the service keeps a store (`migrations/versions/<name>/`).
    has_store: bool = True
    #: `module:attribute` of a `(Connection, ServiceResult) -> None` function the web's
    #: results consumer applies to each result (inventory's stock); None: the web shows
    #: only the status and reason.
    projection: str | None = None
    #: True when the service also reads SES's "Send" events (its `email-sends` queue).
    ses_send_events: bool = False

    def __post_init__(self) -> None:
        """Reject a name that cannot name a queue, a program and a store."""
        if not self.name or not all(c.isalnum() or c == "_" for c in self.name):
            raise ValueError(
                f"service name {self.name!r}: use letters, digits and '_' only; it names "
                "the queue, the supervisord program and the store"
            )
        if self.name in ("web", "email-sends"):
            raise ValueError(f"service name {self.name!r} is taken by the web; pick another")

    @property
    def queue(self) -> str:
        """The queue's name after the resource prefix (`<prefix>-<name>`)."""
        return self.name

    @property
    def dlq(self) -> str:
        """The dead-letter queue's name after the resource prefix."""
        return f"{self.name}-dlq"

    @property
    def program(self) -> str:
        """The supervisord program that runs it."""
        return f"{self.name}_service"

    @property
    def store(self) -> str | None:
        """The store's name (its SQLite file, its PostgreSQL schema), if it keeps one."""
        return self.name if self.has_store else None

    @property
    def command(self) -> tuple[str, ...]:
        """The program's command line (after the virtualenv's `python`)."""
        return ("-m", "services", self.name)


#: Every order service, in the order the web lists them.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="email",
        handler="services.email.handler:EmailService.build",
        ses_send_events=True,
    ),
    ServiceSpec(
        name="inventory",
        handler="services.inventory.handler:InventoryService.build",
        projection="web.projections:stock",
    ),
    ServiceSpec(
        name="analytics",
        handler="services.analytics.handler:AnalyticsService.build",
        projection="web.projections:analytics_summary",
    ),
)


def names() -> tuple[str, ...]:
    """Every service's name."""
    return tuple(spec.name for spec in SERVICES)


def get(name: str) -> ServiceSpec:
    """The service called `name`."""
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError(
        f"no service {name!r} in pubsub_supervisor/registry.py (known: {', '.join(names())})"
    )


def resolve(path: str) -> Callable[..., Any]:
    """Import `module:attribute.attribute` and return it (handlers, projections)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"import path {path!r}: write it as 'package.module:attribute'")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{path} is not callable")
    return target  # type: ignore[no-any-return]
