"""The project's own consumer runtime (`pubsub_supervisor.runtime`) on raw SNS events."""

from __future__ import annotations

import json

from bench.drain.contenders.common import WorkerEnv, make_handler, sqs_client
from bench.drain.tally import Tally
from pubsub_supervisor.program import run_parts
from pubsub_supervisor.runtime import Consumer, ConsumerConfig, Message


def run(env: WorkerEnv, tally: Tally) -> None:
    """Run a `Consumer` with the ConsumerConfig fields from the options until SIGTERM."""
    handle = make_handler(tally, env.work_ms)

    def handler(message: Message) -> None:
        handle(json.loads(message.body))

    config = ConsumerConfig(**env.options.get("config", {}))
    consumer = Consumer(
        # Room for every thread that calls SQS, so none waits for a pooled connection.
        sqs_client(env.endpoint_url, pool=max(10, config.concurrency + config.pollers + 2)),
        env.queue_url,
        handler,
        config=config,
    )
    # SIGTERM stops and drains the consumer, as in every program.
    run_parts([consumer])
