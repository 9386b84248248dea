"""sqs-workers: a JobQueue fed with its own job messages, processed by `process_queue`."""

from __future__ import annotations

import multiprocessing
from typing import Any

import boto3
from sqs_workers import JobQueue, SQSEnv
from sqs_workers.batching import BatchingConfiguration, BatchMessages, NoBatching

from bench.drain.contenders.common import ACCESS_KEY, REGION, SECRET_KEY, WorkerEnv, make_handler
from bench.drain.tally import Tally

JOB_NAME = "bench_handle"


def make_queue(env: WorkerEnv, *, tally: Tally | None = None) -> JobQueue:
    """The benchmark's queue, addressed by URL, with its one job processor attached."""
    session = boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    sqs = SQSEnv(
        session=session,
        sqs_client=session.client("sqs", endpoint_url=env.endpoint_url),
        sqs_resource=session.resource("sqs", endpoint_url=env.endpoint_url),
        codec=env.options.get("codec", "pickle_compat"),
    )
    batch_size = int(env.options.get("batch_size", 0))
    batching: BatchingConfiguration = BatchMessages(batch_size) if batch_size else NoBatching()
    queue: JobQueue = sqs.queue(
        env.queue_name, JobQueue, batching_policy=batching, queue_url=env.queue_url
    )
    handler = make_handler(tally, env.work_ms) if tally is not None else None

    def bench_handle(event: dict[str, Any]) -> None:
        if handler is None:
            raise RuntimeError("this queue only adds jobs")
        handler(event)

    def bench_handle_batch(jobs: list[dict[str, Any]]) -> None:
        for job in jobs:
            bench_handle(job["event"])

    queue.connect_processor(JOB_NAME, bench_handle_batch if batch_size else bench_handle)
    return queue


def prefill(env: WorkerEnv, events: list[dict[str, Any]]) -> None:
    """Add every event as a job, ten per SendMessageBatch (the library's batch writes)."""
    queue = make_queue(env)
    with queue.add_batch():
        for event in events:
            queue.add_job(JOB_NAME, event=event)


def _process(env: WorkerEnv, tally: Tally) -> None:
    make_queue(env, tally=tally).process_queue()


def run(env: WorkerEnv, tally: Tally) -> None:
    """One `process_queue` loop per process, `processes` of them."""
    processes = int(env.options.get("processes", 1))
    if processes == 1:
        _process(env, tally)
        return
    # fork, so the children inherit the ack hook installed in this process.
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_process, args=(env, tally), daemon=True) for _ in range(processes)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
