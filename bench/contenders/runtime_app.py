"""The project's own consumer runtime (`services.runtime`) on the raw SNS-delivered events."""

from __future__ import annotations

import importlib
import importlib.util
import json
import signal
from types import FrameType
from typing import Any

from bench.contenders.common import WorkerEnv, make_handler, sqs_client
from bench.tally import Tally


def unavailable() -> str | None:
    """Why this contender cannot run here, or None when it can."""
    if importlib.util.find_spec("services.runtime") is None:
        return "services.runtime is not in this checkout yet"
    return None


def run(env: WorkerEnv, tally: Tally) -> None:
    """Run a `Consumer` with the ConsumerConfig fields from the options until SIGTERM."""
    # Looked up by name until services.runtime is on this branch; then a plain import.
    runtime = importlib.import_module("services.runtime")
    handle = make_handler(tally, env.work_ms)

    def handler(message: Any) -> None:
        handle(json.loads(message.body))

    config = runtime.ConsumerConfig(**env.options.get("config", {}))
    consumer = runtime.Consumer(
        sqs_client(env.endpoint_url, pool=max(10, config.concurrency + config.pollers + 2)),
        env.queue_url,
        handler,
        config=config,
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        consumer.stop()

    signal.signal(signal.SIGTERM, _stop)
    consumer.run()
