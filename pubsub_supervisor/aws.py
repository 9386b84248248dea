"""boto3 clients built from the settings, and the resolved ARNs and URLs of the topology."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from pubsub_supervisor.topology import Arns

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

    from pubsub_supervisor.settings import Settings


def client_config(pool: int = 32, *, probe: bool = False) -> Config:
    """Connection pool sized for threaded consumers; short timeouts so outages surface.

    A probe (readiness checks) fails within seconds instead of retrying.
    """
    return Config(
        retries={"mode": "standard", "max_attempts": 1 if probe else 3},
        max_pool_connections=pool,
        connect_timeout=2 if probe else 5,
        read_timeout=3 if probe else 30,  # 30: above the 20 s long poll
        tcp_keepalive=True,
    )


@dataclass(frozen=True)
class AwsClients:
    """The clients every program shares (boto3 clients are thread-safe)."""

    sns: SNSClient
    sqs: SQSClient
    ses: SESClient
    sts: STSClient


def make_clients(settings: Settings, pool: int = 32, *, probe: bool = False) -> AwsClients:
    """Clients for the configured endpoint; with no endpoint, real AWS."""
    session = boto3.session.Session(region_name=settings.aws_region)
    kwargs: dict[str, Any] = {"config": client_config(pool, probe=probe)}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
    return AwsClients(
        sns=session.client("sns", **kwargs),
        sqs=session.client("sqs", **kwargs),
        ses=session.client("ses", **kwargs),
        sts=session.client("sts", **kwargs),
    )


def arns_for(clients: AwsClients, region: str) -> Arns:
    """ARN builder for the caller's account (GetCallerIdentity needs no permission)."""
    account = clients.sts.get_caller_identity()["Account"]
    return Arns(account=account, region=region)


def queue_url(clients: AwsClients, name: str) -> str:
    """URL of a queue by name."""
    return clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]


def until_reachable[T](call: Callable[[], T], what: str, max_delay: float = 30.0) -> T:
    """Call until it succeeds, backing off: programs start before the emulator is ready,
    and ride out its restarts, instead of crash-looping under supervisord."""
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as error:
            log.warning(
                "not reachable yet, retrying",
                extra={"what": what, "error": str(error), "retry_in": delay},
            )
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
