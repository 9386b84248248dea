"""The raw ceiling of the emulator's SNS fan-out: PublishBatch(10) to a topic with three
raw-delivery SQS subscriptions, as the project's order topic has; no application code."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from bench.core import payload
from bench.core.cpu import tree_cpu_s
from bench.core.queues import queue_depth
from bench.drain.contenders.common import ACCESS_KEY, REGION, SECRET_KEY

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

Say = Callable[[str], None]
QUEUES = 3
PUBLISH_BATCH = 10


@dataclass
class FanoutResult:
    """One fan-out run: N events published by `threads` threads, delivered to 3 queues."""

    threads: int
    events: int
    publish_calls: int = 0
    #: Events per second published (PublishBatch calls answered), and delivered into
    #: every one of the three queues (the clock stops when the last queue holds all N).
    published_rate: float | None = None
    delivered_rate: float | None = None
    status: str = "failed"
    detail: str = ""
    #: The emulator's CPU per event, publish to delivered in all three queues, in ms.
    emulator_cpu_ms: float | None = None


def _clients(endpoint_url: str) -> tuple[SNSClient, SQSClient]:
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    config = Config(max_pool_connections=16)
    return (
        session.client("sns", endpoint_url=endpoint_url, config=config),
        session.client("sqs", endpoint_url=endpoint_url, config=config),
    )


def run_fanout(
    endpoint_url: str,
    *,
    events: int,
    threads: int,
    timeout_s: float,
    say: Say,
    emulator_pid: int | None = None,
) -> FanoutResult:
    """Publish `events` order events in batches of 10 from `threads` threads; time delivery."""
    sns, sqs = _clients(endpoint_url)
    name = f"bench-fanout-{uuid.uuid4().hex[:8]}"
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    urls: list[str] = []
    result = FanoutResult(threads, events)
    try:
        for n in range(QUEUES):
            url = sqs.create_queue(QueueName=f"{name}-{n}")["QueueUrl"]
            urls.append(url)
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=arn,
                Attributes={"RawMessageDelivery": "true"},
            )
        bodies = [payload.body(payload.order_created(seq)) for seq in range(events)]
        batches = [bodies[i : i + PUBLISH_BATCH] for i in range(0, events, PUBLISH_BATCH)]
        cpu_before = tree_cpu_s(emulator_pid) if emulator_pid else None
        started = time.monotonic()
        _publish(sns, topic_arn, batches, threads, result, started)
        _wait_delivered(sqs, urls, events, started + timeout_s, result, started)
        cpu_after = tree_cpu_s(emulator_pid) if emulator_pid else None
        if cpu_before is not None and cpu_after is not None:
            result.emulator_cpu_ms = (cpu_after - cpu_before) * 1000 / events
    except Exception as exc:  # the ceiling is a reference figure; report, do not crash
        result.status, result.detail = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        for url in urls:
            with contextlib.suppress(Exception):
                sqs.delete_queue(QueueUrl=url)
        with contextlib.suppress(Exception):
            sns.delete_topic(TopicArn=topic_arn)
    say("  " + describe(result))
    return result


def _publish(
    sns: SNSClient,
    topic_arn: str,
    batches: list[list[str]],
    threads: int,
    result: FanoutResult,
    started: float,
) -> None:
    lock = threading.Lock()
    cursor = iter(batches)
    failures: list[str] = []

    def publisher() -> None:
        while True:
            with lock:
                batch = next(cursor, None)
            if batch is None:
                return
            entries: Any = [
                {
                    "Id": str(i),
                    "Message": body,
                    "MessageAttributes": {
                        "event_type": {"DataType": "String", "StringValue": "order.created"},
                        "event_id": {
                            "DataType": "String",
                            "StringValue": json.loads(body)["event_id"],
                        },
                    },
                }
                for i, body in enumerate(batch)
            ]
            response = sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)
            with lock:
                result.publish_calls += 1
                failures.extend(str(f) for f in response.get("Failed", []))

    workers = [threading.Thread(target=publisher, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    if failures:
        raise RuntimeError(f"PublishBatch refused {len(failures)} entries: {failures[:3]}")
    result.published_rate = result.events / elapsed if elapsed > 0 else None


def _wait_delivered(
    sqs: SQSClient,
    urls: list[str],
    events: int,
    deadline: float,
    result: FanoutResult,
    started: float,
) -> None:
    remaining = list(urls)
    while remaining:
        remaining = [url for url in remaining if queue_depth(sqs, url) < events]
        if not remaining:
            break
        if time.monotonic() > deadline:
            result.status = "timeout"
            result.detail = f"{len(remaining)} queue(s) short of {events} in time"
            return
        time.sleep(0.02)
    result.delivered_rate = events / (time.monotonic() - started)
    result.status = "ok"


def describe(result: FanoutResult) -> str:
    """One progress line."""
    if result.status != "ok":
        return f"fan-out, {result.threads} thread(s): {result.status} {result.detail}"
    return (
        f"fan-out, {result.threads} thread(s): {result.events} events published at "
        f"{result.published_rate:,.0f}/s, in all {QUEUES} queues at {result.delivered_rate:,.0f}/s"
        + (
            f", emulator {result.emulator_cpu_ms:.2f} ms CPU/event"
            if result.emulator_cpu_ms
            else ""
        )
    )


def ceiling(results: list[FanoutResult]) -> float | None:
    """The best delivered rate among the runs that completed."""
    rates = [r.delivered_rate for r in results if r.status == "ok" and r.delivered_rate]
    return max(rates) if rates else None
