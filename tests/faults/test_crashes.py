"""Crashes and restarts under load: kill -9 mid-batch, `supervisorctl restart all`, a
handler slower than the visibility timeout. Nothing is lost and no effect repeats."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from pubsub_supervisor.runtime import Consumer, ConsumerConfig, Message
from tests.faults.conftest import FaultStack
from tests.support.orders import Figures, OrderStream
from tests.support.stack import wait_for

pytestmark = pytest.mark.faults

CONSUMERS = ("email_service", "inventory_service", "analytics_service")


def log_events(fs: FaultStack, program: str, message: str) -> list[dict[str, Any]]:
    """The JSON log lines of a program with this message."""
    found = []
    for line in fs.stack.log_text(program).splitlines():
        if f'"message": "{message}"' in line:
            found.append(json.loads(line))
    return found


def in_flight(fs: FaultStack, program: str) -> int:
    """Messages of the program's queue that a consumer holds right now."""
    spec = fs.settings.topology.queue_for(program.removesuffix("_service"))
    url = fs.clients.sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
    attrs = fs.clients.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessagesNotVisible"])


def kill_mid_batch(fs: FaultStack, program: str) -> int:
    """SIGKILL the program while it holds messages; returns how many it held."""
    before = wait_for(lambda: in_flight(fs, program), 30, f"{program} to hold messages", 0.02)
    _state, pid = fs.stack.status()[program]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # What it held is what stays invisible once it is dead (it can no longer delete); it
    # may have received more between the first count and the kill.
    held = max(before, in_flight(fs, program))

    def restarted() -> bool:
        state, new_pid = fs.stack.status()[program]
        return state == "RUNNING" and new_pid not in (None, pid)

    wait_for(restarted, 30, f"supervisord to restart {program}")
    return held


def kill_under_load(
    fs: FaultStack, tag: str, programs: tuple[str, ...]
) -> tuple[OrderStream, dict[str, int], float]:
    """Kill each program mid-batch while orders stream in; wait for the orders to settle."""
    held: dict[str, int] = {}
    with OrderStream(fs.api, tag, rate=15) as stream:
        for program in programs:
            stream.wait_accepted(len(stream.accepted) + 40)
            held[program] = kill_mid_batch(fs, program)
        stream.wait_accepted(len(stream.accepted) + 40)
    return stream, held, fs.ledger.wait_settled(tag, timeout=90)


def test_kill_9_mid_batch_loses_nothing_and_repeats_no_effect(
    crash_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    fs = crash_stack
    baseline = fs.ledger.baseline()
    stream, held, settle = kill_under_load(fs, "kill9", ("inventory_service", "analytics_service"))
    figures = fs.ledger.account(
        "kill -9 inventory and analytics mid-batch",
        "kill9",
        stream.accepted,
        baseline,
        fs.dead_lettered(),
    )
    figures.notes |= {"held_at_kill": held, "settle_s": settle}
    record(figures)
    assert figures.sent >= 120
    assert all(n > 0 for n in held.values())
    # Stock and analytics commit each effect with its record: exactly once.
    assert (figures.lost, figures.duplicated, figures.dead_lettered) == (0, 0, 0)


def test_kill_9_email_mid_batch_loses_nothing_and_sends_no_confirmation_twice(
    crash_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    """SES has no idempotency key: a send SES accepted just before the kill, before the
    service recorded it, has no answer in the store after the restart. SES's Send event
    for it (tagged with the event id) settles it: the redelivery does not send again."""
    fs = crash_stack
    fs.wait_idle()
    baseline, dead_before = fs.ledger.baseline(), fs.dead_lettered()
    stream, held, settle = kill_under_load(fs, "kill9-email", ("email_service",))
    figures = fs.ledger.account(
        "kill -9 email mid-batch",
        "kill9-email",
        stream.accepted,
        baseline,
        fs.dead_lettered() - dead_before,
    )
    figures.notes |= {
        "held_at_kill": held["email_service"],
        "settle_s": settle,
        # Sends without an answer after the restart: settled by SES's Send event, or
        # (no event within EMAIL_CONFIRM_SECONDS: SES never took them) sent again.
        "settled_by_send_event": len(
            log_events(fs, "email_service", "an earlier send went out; not sending again")
        ),
        "sent_again_unconfirmed": len(
            log_events(
                fs, "email_service", "an earlier send was never confirmed by SES; sending again"
            )
        ),
    }
    record(figures)
    assert figures.sent >= 80
    assert (figures.lost, figures.dead_lettered) == (0, 0)
    assert figures.notes["without_email"] == 0
    assert figures.notes["repeated"] == {"emails": 0, "units": 0, "counts": 0}
    assert figures.duplicated == 0


def test_restart_all_under_load_loses_and_duplicates_nothing(
    crash_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    fs = crash_stack
    tag = "restart"
    fs.wait_idle()
    baseline, dead_before = fs.ledger.baseline(), fs.dead_lettered()
    drains_before = {p: len(log_events(fs, p, "consumer stopped")) for p in CONSUMERS}
    supervisord_log = fs.stack.log_dir / "supervisord.log"
    log_start = supervisord_log.stat().st_size
    with OrderStream(fs.api, tag, rate=15) as stream:
        stream.wait_accepted(40)
        started = time.monotonic()
        fs.stack.ctl("restart", "all")
        restart_seconds = round(time.monotonic() - started, 1)
        wait_for(fs.stack.all_running, 60, "every program RUNNING again")
        stream.wait_accepted(len(stream.accepted) + 40)
    settle = fs.ledger.wait_settled(tag, timeout=60)
    figures = fs.ledger.account(
        "supervisorctl restart all under load",
        tag,
        stream.accepted,
        baseline,
        fs.dead_lettered() - dead_before,
    )
    drains = [log_events(fs, p, "consumer stopped")[drains_before[p]] for p in CONSUMERS]
    figures.notes |= {
        "restart_s": restart_seconds,
        "released_on_stop": sum(d["released"] for d in drains),
        "settle_s": settle,
    }
    record(figures)
    assert figures.sent >= 80
    assert (figures.lost, figures.duplicated, figures.dead_lettered) == (0, 0, 0)
    # Each consumer drained in time and exited by itself: nothing left unfinished, no
    # SIGKILL from supervisord after stopwaitsecs.
    assert [d["unfinished"] for d in drains] == [0, 0, 0]
    stops = supervisord_log.read_text()[log_start:]
    assert [p for p in (*CONSUMERS, "web_worker") if f"killing '{p}'" in stops] == []


def test_handler_slower_than_the_visibility_timeout_runs_once(
    crash_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    """Two replicas of a consumer on the real runtime share a queue whose visibility
    timeout (2 s) is shorter than the handler (3.5 s): the heartbeat keeps each message."""
    sqs = crash_stack.clients.sqs
    url = sqs.create_queue(QueueName="faults-slow", Attributes={"VisibilityTimeout": "2"})[
        "QueueUrl"
    ]
    sent = 12
    for i in range(sent):
        sqs.send_message(QueueUrl=url, MessageBody=f"slow-{i}")
    calls: Counter[str] = Counter()
    active: Counter[int] = Counter()
    peak: Counter[int] = Counter()
    lock = threading.Lock()

    def handler_for(replica: int) -> Callable[[Message], None]:
        def handle(message: Message) -> None:
            with lock:
                calls[message.body] += 1
                active[replica] += 1
                peak[replica] = max(peak[replica], active[replica])
            time.sleep(3.5)
            with lock:
                active[replica] -= 1

        return handle

    config = ConsumerConfig(concurrency=3, batch_size=3, visibility_timeout=2, wait_seconds=1)
    replicas = [Consumer(sqs, url, handler_for(i), config=config) for i in range(2)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in replicas]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: sum(c.stats.processed for c in replicas) == sent, 60, "every message")
        time.sleep(3)  # past another visibility timeout: nothing comes back
    finally:
        for consumer in replicas:
            consumer.stop()
        for thread in threads:
            thread.join(15)
    received = sum(c.stats.received for c in replicas)
    figures = Figures(
        test="handler slower than the visibility timeout",
        sent=sent,
        processed=len(calls),
        lost=sent - len(calls),
        duplicated=sum(n - 1 for n in calls.values()),
        notes={"received": received, "peak_concurrency": dict(peak)},
    )
    record(figures)
    assert (figures.lost, figures.duplicated) == (0, 0)
    # Never handed out twice: the heartbeat kept every message invisible while it ran.
    assert received == sent
    # As many handlers at once as configured, and no more.
    assert max(peak.values()) == 3
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        attrs["ApproximateNumberOfMessages"]
        == attrs["ApproximateNumberOfMessagesNotVisible"]
        == "0"
    )


def test_services_run_the_configured_concurrency(crash_stack: FaultStack) -> None:
    for program in CONSUMERS:
        queue = crash_stack.settings.topology.queue_for(program.removesuffix("_service")).name
        started = [
            line
            for line in log_events(crash_stack, program, "consumer started")
            if line["queue"] == queue
        ]
        assert started, program
        assert {line["concurrency"] for line in started} == {4}, program
