"""What every order service shares: decode the event, run the service, report the outcome.

A service is a callable `(OrderCreated) -> Outcome` that makes its effect idempotent; this
module runs it on the consumer runtime and publishes each outcome to the results topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pubsub_supervisor import logs
from pubsub_supervisor.clients import AwsClients, arns_for, retry_transient, until_reachable
from pubsub_supervisor.errors import PoisonMessage
from pubsub_supervisor.events import (
    OrderCreated,
    ServiceResult,
    decode,
    encode,
    message_attributes,
    new_id,
    unwrap_body,
)
from pubsub_supervisor.idempotency import Outcome
from pubsub_supervisor.program import Part, consumer_for, exit_after_drain, run_program
from pubsub_supervisor.publish_batcher import PublishBatcher
from pubsub_supervisor.runtime import Message
from pubsub_supervisor.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)


class OrderService(Protocol):
    """Process one order; the effect must happen once per event id."""

    def __call__(self, event: OrderCreated) -> Outcome: ...


class ResultPublisher:
    """Sends a service's outcome for an order back to the web, in batches: concurrent
    handlers' results share one PublishBatch."""

    def __init__(
        self,
        sns: SNSClient,
        topic_arn: str,
        service: str,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        retry_seconds: float = 300.0,
        more_coming: Callable[[int], bool] = lambda _batched: False,
    ) -> None:
        self.sns = sns
        self.topic_arn = topic_arn
        self.service = service
        self.should_stop = should_stop
        self.retry_seconds = retry_seconds
        self.batcher = PublishBatcher(sns, topic_arn, more_coming=more_coming)

    def publish(self, order_id: str, outcome: Outcome, trace_id: str | None) -> None:
        """Publish one result; while SNS is unreachable, retry here.

        The effect is already recorded, so waiting in place (the heartbeat keeps the
        message) costs nothing, whereas failing would spend one of the message's receives
        and could dead-letter an order that was processed. Raises when SNS refuses the
        result, on stop, or after `retry_seconds`: the message is then retried.
        """
        result = ServiceResult(
            order_id=order_id,
            service=self.service,
            status=outcome.status,
            reason=outcome.reason,
            data=outcome.data,
            trace_id=trace_id or new_id(),
        )
        retry_transient(
            lambda: self.batcher.publish(encode(result), message_attributes(result)),
            f"publish {self.service} result",
            should_stop=self.should_stop,
            max_seconds=self.retry_seconds,
        )


def make_handler(service: OrderService, results: ResultPublisher) -> Callable[[Message], None]:
    """Adapt an order service to the runtime: decode, process, report."""

    def handle(message: Message) -> None:
        event = decode(message.body)
        if not isinstance(event, OrderCreated):
            raise PoisonMessage(f"{results.service} does not handle {event.event_type}")
        with logs.bound(order_id=event.order_id, event_id=event.event_id, trace_id=event.trace_id):
            outcome = service(event)
            results.publish(event.order_id, outcome, event.trace_id)
            log.info(
                "order handled",
                extra={"status": outcome.status, "reason": outcome.reason},
            )

    return handle


def dead_letter_reporter(results: ResultPublisher) -> Callable[[Message, str], None]:
    """Tell the web an order's message ended in the dead-letter queue."""

    def report(message: Message, reason: str) -> None:
        try:
            body = unwrap_body(message.body)
        except PoisonMessage:
            return
        order_id = body.get("order_id")
        if isinstance(order_id, str) and order_id:
            results.publish(order_id, Outcome("failed", reason), body.get("trace_id"))

    return report


def run_service(
    name: str,
    build: Callable[[Settings, AwsClients], OrderService],
    settings: Settings | None = None,
) -> int:
    """Entry point of a service program: build it, consume its queue until SIGTERM."""
    return run_program(f"{name}_service", service_parts(name, build), settings)


def service_parts(
    name: str, build: Callable[[Settings, AwsClients], OrderService]
) -> Callable[[Settings, AwsClients], list[Part]]:
    """What a service program runs: the consumer of its queue, publishing each outcome,
    and the consumers of the other queues it reads (its `companions`)."""

    def parts(settings: Settings, clients: AwsClients) -> list[Part]:
        service = build(settings, clients)
        arns = until_reachable(lambda: arns_for(clients, settings.aws_region), "STS")
        results = ResultPublisher(
            clients.sns,
            arns.topic(settings.topology.results_topic),
            name,
            should_stop=lambda: consumer.stopping,
            # Other messages in hand will end in a result soon: worth a short linger.
            more_coming=lambda batched: consumer.capacity.working() > batched,
        )
        consumer = consumer_for(
            settings,
            clients,
            name,
            make_handler(service, results),
            on_dead_letter=dead_letter_reporter(results),
        )
        companions = [
            # A small consumer of another queue the program reads (the email service's
            # SES events).
            consumer_for(settings, clients, queue, handler, concurrency=2, pollers=1)
            for queue, handler in getattr(service, "companions", dict)().items()
        ]
        return [consumer, *companions]

    return parts


def main(name: str, build: Callable[[Settings, AwsClients], OrderService]) -> None:
    """`python -m services NAME`."""
    exit_after_drain(run_service(name, build))
