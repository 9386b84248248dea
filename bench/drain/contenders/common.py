"""What every worker process shares: its settings, the handler, and the ack hook."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from bench.core import payload
from bench.drain.tally import Tally

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: The emulator does not check credentials; these only have to be present.
ACCESS_KEY = "bench"
SECRET_KEY = "bench"
REGION = "us-east-1"


@dataclass(frozen=True)
class WorkerEnv:
    """A worker's settings, handed from the harness through environment variables."""

    endpoint_url: str
    queue_url: str
    queue_name: str
    tally_path: Path
    work_ms: float
    options: dict[str, Any]

    def to_environ(self) -> dict[str, str]:
        """The variables a worker subprocess reads back with `from_environ`."""
        return {
            "BENCH_ENDPOINT_URL": self.endpoint_url,
            "BENCH_QUEUE_URL": self.queue_url,
            "BENCH_QUEUE_NAME": self.queue_name,
            "BENCH_TALLY": str(self.tally_path),
            "BENCH_WORK_MS": str(self.work_ms),
            "BENCH_OPTIONS": json.dumps(self.options),
            # boto3 clients built by the libraries themselves find the emulator this way.
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    @classmethod
    def from_environ(cls) -> WorkerEnv:
        """Read the settings the harness put in this process's environment."""
        env = os.environ
        return cls(
            endpoint_url=env["BENCH_ENDPOINT_URL"],
            queue_url=env["BENCH_QUEUE_URL"],
            queue_name=env["BENCH_QUEUE_NAME"],
            tally_path=Path(env["BENCH_TALLY"]),
            work_ms=float(env["BENCH_WORK_MS"]),
            options=json.loads(env["BENCH_OPTIONS"]),
        )

    @property
    def port(self) -> int:
        """The emulator's port."""
        return int(self.endpoint_url.rsplit(":", 1)[1])


def make_handler(tally: Tally, work_ms: float) -> Callable[[dict[str, Any]], None]:
    """The benchmark's work: note the message, then sleep `work_ms` as stand-in I/O."""
    work_s = work_ms / 1000

    def handle(event: dict[str, Any]) -> None:
        started = time.time()
        if work_s:
            time.sleep(work_s)
        tally.handled(payload.order_id(event), started, time.time())

    return handle


def install_ack_hook(tally: Tally) -> None:
    """Record every SQS receive and successful delete made through botocore in this process.

    Each library deletes through its own boto3 client or resource; hooking the one
    place all their calls go through times every contender's acks the same way.
    """
    original = BaseClient._make_api_call  # type: ignore[attr-defined]
    if getattr(original, "_bench_hooked", False):
        return

    def _make_api_call(self: BaseClient, operation_name: str, api_params: Any) -> Any:
        result = original(self, operation_name, api_params)
        if operation_name == "DeleteMessage":
            tally.acked(1, time.time())
        elif operation_name == "DeleteMessageBatch":
            tally.acked(len(result.get("Successful", [])), time.time())
        elif operation_name == "ReceiveMessage":
            tally.received(len(result.get("Messages", [])))
        return result

    _make_api_call._bench_hooked = True  # type: ignore[attr-defined]
    BaseClient._make_api_call = _make_api_call  # type: ignore[attr-defined]


def sqs_client(endpoint_url: str, *, pool: int = 10) -> SQSClient:
    """A boto3 SQS client on the emulator with `pool` HTTP connections."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(max_pool_connections=pool),
    )
