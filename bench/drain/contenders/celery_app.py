"""Celery on its SQS broker (kombu's SQS transport), consuming its own task messages."""

from __future__ import annotations

from typing import Any

from celery import Celery

from bench.drain.contenders.common import ACCESS_KEY, REGION, SECRET_KEY, WorkerEnv, make_handler
from bench.drain.tally import Tally

TASK_NAME = "bench.handle"


def make_app(env: WorkerEnv, *, tally: Tally | None = None) -> Celery:
    """A Celery app whose one task runs the benchmark handler on `env`'s queue."""
    app = Celery("bench")
    transport_options: dict[str, Any] = {
        "region": REGION,
        "is_secure": False,
        # The queue exists already: predefined queues skip ListQueues/CreateQueue, and
        # kombu sends each request to this URL's host, which is the emulator on 127.0.0.1.
        "predefined_queues": {
            env.queue_name: {
                "url": env.queue_url,
                "access_key_id": ACCESS_KEY,
                "secret_access_key": SECRET_KEY,
            }
        },
        **env.options.get("transport_options", {}),
    }
    app.conf.update(
        broker_url=f"sqs://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:{env.port}",
        broker_transport_options=transport_options,
        task_default_queue=env.queue_name,
        # SQS has no broadcast: remote control would need queues that do not exist.
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        **env.options.get("conf", {}),
    )
    handler = make_handler(tally, env.work_ms) if tally is not None else None

    @app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
    def handle(event: dict[str, Any]) -> None:
        if handler is None:
            raise RuntimeError("this app only sends tasks")
        handler(event)

    return app
