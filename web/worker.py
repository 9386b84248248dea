"""The web's background program: the outbox relay and the consumer of service results.

Run as `python -m web.worker` (supervisord program `web_worker`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from pubsub_supervisor import logs, metrics
from pubsub_supervisor.clients import AwsClients, queue_url, until_reachable
from pubsub_supervisor.errors import PoisonMessage
from pubsub_supervisor.events import ServiceResult, decode
from pubsub_supervisor.program import Part, consumer_for, exit_after_drain, run_program
from pubsub_supervisor.runtime import Message
from pubsub_supervisor.settings import Settings
from web import store
from web.context import WebContext
from web.outbox import OutboxRelay

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)


def result_handler(context: WebContext) -> Callable[[Message], None]:
    """Apply one service result to the order it names."""

    def handle(message: Message) -> None:
        event = decode(message.body)
        if not isinstance(event, ServiceResult):
            raise PoisonMessage(f"expected {ServiceResult.__name__}, got {event.event_type}")
        with logs.bound(order_id=event.order_id, service=event.service):
            if not store.apply_result(context.engine, event):
                raise PoisonMessage(f"unknown order {event.order_id}")
            log.info("order status updated", extra={"status": event.status})

    return handle


def queue_backlog(sqs: SQSClient, urls: Callable[[], list[str]]) -> Callable[[], int]:
    """Visible messages in the given queues (what consumers have not received yet)."""

    def backlog() -> int:
        total = 0
        for url in urls():
            attrs = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            ).get("Attributes", {})
            total += int(attrs.get("ApproximateNumberOfMessages", "0"))
        return total

    return backlog


def build(settings: Settings, clients: AwsClients) -> list[Part]:
    """The outbox relay and the consumer of the web's queue."""
    context = WebContext(settings, clients)
    topic_arns = until_reachable(lambda: context.topic_arns, "STS")
    relay = OutboxRelay(
        context.engine,
        clients.sns,
        topic_arns,
        poll_interval=settings.outbox_poll_interval,
        claim_seconds=settings.outbox_claim_seconds,
        on_published=metrics.OUTBOX_PUBLISHED.labels(program=settings.program_name).inc,
        on_failed=metrics.OUTBOX_FAILURES.labels(program=settings.program_name).inc,
        republish_after=settings.outbox_republish_after,
        backlog=queue_backlog(
            clients.sqs,
            lambda: [queue_url(clients, q.name) for q in settings.topology.queues],
        ),
    )
    consumer = consumer_for(settings, clients, "web", result_handler(context), concurrency=4)
    return [relay, consumer]


def main() -> int:
    """Run the relay and the results consumer until SIGTERM."""
    return run_program("web_worker", build)


if __name__ == "__main__":
    exit_after_drain(main())
