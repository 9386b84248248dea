"""Hand-written boto3 consumers: the floor (one at a time) and the ceiling (batched)."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from bench.drain.contenders.common import WorkerEnv, make_handler, sqs_client
from bench.drain.tally import Tally

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def run_naive(env: WorkerEnv, tally: Tally) -> None:
    """ReceiveMessage for one message, handle it, DeleteMessage; forever."""
    sqs = sqs_client(env.endpoint_url)
    handle = make_handler(tally, env.work_ms)
    while True:
        for message in sqs.receive_message(QueueUrl=env.queue_url).get("Messages", []):
            handle(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=env.queue_url, ReceiptHandle=message["ReceiptHandle"])


def _batched_loop(sqs: SQSClient, env: WorkerEnv, tally: Tally, wait_seconds: int) -> None:
    handle = make_handler(tally, env.work_ms)
    while True:
        messages = sqs.receive_message(
            QueueUrl=env.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        for message in messages:
            handle(json.loads(message["Body"]))
        if messages:
            sqs.delete_message_batch(
                QueueUrl=env.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )


def run_batched(env: WorkerEnv, tally: Tally) -> None:
    """`threads` loops of ReceiveMessage(10, long poll), handle each, DeleteMessageBatch."""
    threads = int(env.options.get("threads", 1))
    wait_seconds = int(env.options.get("wait_seconds", 20))
    sqs = sqs_client(env.endpoint_url, pool=max(10, threads))
    workers = [
        threading.Thread(target=_batched_loop, args=(sqs, env, tally, wait_seconds), daemon=True)
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
