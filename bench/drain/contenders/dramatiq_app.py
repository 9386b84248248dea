"""dramatiq with the dramatiq_sqs broker, consuming its own messages."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq_sqs import SQSBroker

from bench.drain.contenders.common import ACCESS_KEY, REGION, SECRET_KEY, WorkerEnv, make_handler
from bench.drain.tally import Tally

ACTOR_NAME = "bench_handle"


def make_broker(env: WorkerEnv, *, tally: Tally | None = None) -> tuple[SQSBroker, Any]:
    """A broker on the emulator and the benchmark actor on `env`'s queue."""
    broker = SQSBroker(
        endpoint_url=env.endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    handler = make_handler(tally, env.work_ms) if tally is not None else None

    def bench_handle(event: dict[str, Any]) -> None:
        if handler is None:
            raise RuntimeError("this broker only sends messages")
        handler(event)

    actor = dramatiq.actor(actor_name=ACTOR_NAME, queue_name=env.queue_name, broker=broker)(
        bench_handle
    )
    return broker, actor
