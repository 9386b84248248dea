"""boto3 clients built from the settings, and the resolved ARNs and URLs of the topology."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from pubsub_supervisor.retry import Backoff
from pubsub_supervisor.topology import Arns, is_missing

log = logging.getLogger(__name__)

#: First pause of a retry loop; it doubles per failure.
FIRST_RETRY_SECONDS = 0.5

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

    from pubsub_supervisor.settings import Settings


#: Added to the User-Agent of readiness calls, so the emulator can leave them out of its
#: console (localstack/init/start.d/quiet-probes.py); real AWS ignores it.
READINESS_AGENT = "pubsub-readiness"


def client_config(
    pool: int = 32, *, probe: bool = False, retry: bool = True, agent: str | None = None
) -> Config:
    """Connection pool sized for threaded consumers; short timeouts so outages surface.

    A probe (readiness checks) fails within seconds instead of retrying. Without `retry`,
    a call is made once: botocore retries a timed-out call blindly, which for SES's
    SendEmail could send a second email (the email service settles a lost answer itself).
    `agent` is added to the User-Agent.
    """
    return Config(
        user_agent_extra=agent,
        retries={"mode": "standard", "max_attempts": 3 if retry and not probe else 1},
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


def make_clients(
    settings: Settings, pool: int = 32, *, probe: bool = False, agent: str | None = None
) -> AwsClients:
    """Clients for the configured endpoint; with no endpoint, real AWS."""
    session = boto3.session.Session(region_name=settings.aws_region)
    kwargs: dict[str, Any] = {"config": client_config(pool, probe=probe, agent=agent)}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
    return AwsClients(
        sns=session.client("sns", **kwargs),
        sqs=session.client("sqs", **kwargs),
        ses=session.client(
            "ses",
            **(kwargs | {"config": client_config(pool, probe=probe, retry=False, agent=agent)}),
        ),
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
    delays = Backoff(FIRST_RETRY_SECONDS, max_delay)
    while True:
        try:
            return call()
        except Exception as error:
            delay = delays.next()
            log.warning(
                "not reachable yet, retrying",
                extra={"what": what, "error": str(error), "retry_in": delay},
            )
            time.sleep(delay)


#: Error codes that say "not now" rather than "never": throttling, and a resource that
#: is missing while the emulator restarts and its init hook recreates it.
_TRANSIENT_CODES = frozenset(
    {"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "Unavailable"}
)


def is_transient(error: BaseException) -> bool:
    """True for failures of the endpoint rather than of the request: no connection,
    timeouts, 5xx, throttling, or a topic/queue that does not exist (yet)."""
    # A body that is not AWS's (a proxy's or load balancer's 502/503 page) cannot be parsed.
    if isinstance(error, BotoCoreError | ResponseParserError):
        return True
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        code = error.response.get("Error", {}).get("Code", "")
        return status >= 500 or code in _TRANSIENT_CODES or is_missing(error)
    return False


def retry_transient[T](
    call: Callable[[], T],
    what: str,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    max_seconds: float = 300.0,
    max_delay: float = 10.0,
) -> T:
    """Call until it succeeds, retrying transient failures with backoff for up to
    `max_seconds` (or until `should_stop()`); other errors, and the last one, propagate.

    Only for idempotent calls: a timed-out request may have taken effect.
    """
    deadline = time.monotonic() + max_seconds
    delays = Backoff(FIRST_RETRY_SECONDS, max_delay)
    while True:
        try:
            return call()
        except Exception as error:
            delay = delays.delay
            if not is_transient(error) or should_stop() or time.monotonic() + delay > deadline:
                raise
            log.warning(
                "endpoint failed, retrying",
                extra={"what": what, "error": str(error), "retry_in": delays.next()},
            )
            _pause(delay, should_stop)


def _pause(seconds: float, should_stop: Callable[[], bool]) -> None:
    """Sleep, but notice a stop within a fifth of a second."""
    deadline = time.monotonic() + seconds
    while not should_stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.2, left))
