"""What every order service shares: decode the event, run the service, report the outcome.

A service is a callable `(OrderCreated) -> Outcome` that makes its effect idempotent; this
module runs it on the consumer runtime and publishes each outcome to the results topic.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from pubsub_supervisor import logs, metrics
from pubsub_supervisor.clients import (
    AwsClients,
    arns_for,
    make_clients,
    queue_url,
    retry_transient,
    until_reachable,
)
from pubsub_supervisor.errors import ConfigError, PoisonMessage
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
from pubsub_supervisor.runtime import Consumer, ConsumerConfig, Message, exit_after_drain
from pubsub_supervisor.runtime.metrics import MetricsMiddleware
from pubsub_supervisor.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)

#: Exit code for a configuration error; supervisord treats it as fatal (see exitcodes).
EXIT_CONFIG = 2


class OrderService(Protocol):
    """Process one order; the effect must happen once per event id."""

    def __call__(self, event: OrderCreated) -> Outcome: ...


class ResultPublisher:
    """Sends a service's outcome for an order back to the web."""

    def __init__(
        self,
        sns: SNSClient,
        topic_arn: str,
        service: str,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        retry_seconds: float = 300.0,
    ) -> None:
        self.sns = sns
        self.topic_arn = topic_arn
        self.service = service
        self.should_stop = should_stop
        self.retry_seconds = retry_seconds

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
            lambda: self.sns.publish(
                TopicArn=self.topic_arn,
                Message=encode(result),
                MessageAttributes=message_attributes(result),  # type: ignore[arg-type]
            ),
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
    try:
        settings = settings or Settings()
        logs.configure(settings.program_name or f"{name}_service", settings.log_level)
        metrics.prepare()
        clients = make_clients(
            settings, pool=settings.consumer_concurrency + settings.consumer_pollers + 8
        )
        service = build(settings, clients)
    except ConfigError as error:
        log.critical("configuration error", extra={"error": str(error)})
        return EXIT_CONFIG
    spec = settings.topology.queue_for(name)
    arns = until_reachable(lambda: arns_for(clients, settings.aws_region), "STS")
    url = until_reachable(lambda: queue_url(clients, spec.name), f"queue {spec.name}")
    results = ResultPublisher(
        clients.sns,
        arns.topic(settings.topology.results_topic),
        name,
        should_stop=lambda: consumer.stopping,
    )
    consumer = Consumer(
        clients.sqs,
        url,
        make_handler(service, results),
        config=ConsumerConfig(
            concurrency=settings.consumer_concurrency,
            pollers=settings.consumer_pollers,
            wait_seconds=settings.consumer_wait_seconds,
            visibility_timeout=spec.visibility_timeout,
        ),
        middleware=[MetricsMiddleware(settings.program_name, spec.name)],
        on_dead_letter=dead_letter_reporter(results),
    )
    companions = [
        companion_consumer(settings, clients, queue, handler)
        for queue, handler in getattr(service, "companions", dict)().items()
    ]
    run_together(consumer, companions)
    return 0


def companion_consumer(
    settings: Settings, clients: AwsClients, consumer_name: str, handler: Callable[[Message], None]
) -> Consumer:
    """A small consumer of another queue the program reads (the email service's SES events)."""
    spec = settings.topology.queue_for(consumer_name)
    url = until_reachable(lambda: queue_url(clients, spec.name), f"queue {spec.name}")
    return Consumer(
        clients.sqs,
        url,
        handler,
        config=ConsumerConfig(
            concurrency=2,
            pollers=1,
            wait_seconds=settings.consumer_wait_seconds,
            visibility_timeout=spec.visibility_timeout,
        ),
        middleware=[MetricsMiddleware(settings.program_name, spec.name)],
    )


def run_together(main_consumer: Consumer, companions: list[Consumer]) -> None:
    """Run the main consumer here and its companions beside it; SIGTERM drains them all."""
    threads = [
        threading.Thread(
            target=companion.run,
            kwargs={"install_signal_handlers": False},
            name=f"companion-{companion.queue_name}",
            daemon=True,
        )
        for companion in companions
    ]

    def stop_all(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
        main_consumer.stop()
        for companion in companions:
            companion.stop()

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for thread in threads:
        thread.start()
    main_consumer.run(install_signal_handlers=False)
    for companion in companions:
        companion.stop()
    for companion in companions:
        companion.wait_stopped(companion.config.drain_seconds)


def main(name: str, build: Callable[[Settings, AwsClients], OrderService]) -> None:
    """`python -m services.<name>`."""
    exit_after_drain(run_service(name, build))
