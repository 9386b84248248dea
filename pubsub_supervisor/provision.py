"""Provisioning: the settings' topology applied with clients made from the same settings."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pubsub_supervisor.clients import AwsClients, arns_for, make_clients
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.topology import Arns, Change, apply_topology

log = logging.getLogger(__name__)


def provision(
    settings: Settings,
    clients: AwsClients | None = None,
    *,
    arns: Arns | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] = log.info,
) -> list[Change]:
    """Create or update every topic, queue, subscription and sender identity; return the changes.

    `clients` and `arns` default to those of `settings` (the account from STS).
    """
    clients = clients or make_clients(settings)
    return apply_topology(
        settings.topology,
        sns=clients.sns,
        sqs=clients.sqs,
        ses=clients.ses,
        arns=arns or arns_for(clients, settings.aws_region),
        dry_run=dry_run,
        progress=progress,
    )
