"""The web's background program: the outbox relay and the consumer of service results.

Run as `python -m web.worker` (supervisord program `web_worker`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from pubsub_supervisor import logs, metrics
from pubsub_supervisor.clients import queue_url, until_reachable
from pubsub_supervisor.errors import PoisonMessage
from pubsub_supervisor.events import ServiceResult, decode
from pubsub_supervisor.runtime import Consumer, ConsumerConfig, Message, exit_after_drain
from pubsub_supervisor.runtime.metrics import MetricsMiddleware
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


def main() -> int:
    """Run the relay and the results consumer until SIGTERM."""
    settings = Settings()
    logs.configure(settings.program_name, settings.log_level)
    metrics.prepare()
    context = WebContext(settings)
    topic_arns = until_reachable(lambda: context.topic_arns, "STS")
    spec = settings.topology.queue_for("web")
    url = until_reachable(lambda: queue_url(context.aws, spec.name), f"queue {spec.name}")
    relay = OutboxRelay(
        context.engine,
        context.aws.sns,
        topic_arns,
        poll_interval=settings.outbox_poll_interval,
        claim_seconds=settings.outbox_claim_seconds,
        on_published=metrics.OUTBOX_PUBLISHED.labels(program=settings.program_name).inc,
        on_failed=metrics.OUTBOX_FAILURES.labels(program=settings.program_name).inc,
        republish_after=settings.outbox_republish_after,
        backlog=queue_backlog(
            context.aws.sqs,
            lambda: [queue_url(context.aws, q.name) for q in settings.topology.queues],
        ),
    )
    consumer = Consumer(
        context.aws.sqs,
        url,
        result_handler(context),
        config=ConsumerConfig(
            concurrency=4,
            wait_seconds=settings.consumer_wait_seconds,
            visibility_timeout=spec.visibility_timeout,
        ),
        middleware=[MetricsMiddleware(settings.program_name, spec.name)],
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, stopping", extra={"signal": signal.Signals(signum).name})
        relay.stop()
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    relay_thread = threading.Thread(target=relay.run, name="outbox-relay")
    relay_thread.start()
    consumer.run(install_signal_handlers=False)
    relay.stop()
    relay_thread.join()
    return 0


if __name__ == "__main__":
    exit_after_drain(main())
