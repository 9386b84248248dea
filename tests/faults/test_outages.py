"""Outages: the emulator dies and comes back without its state; SNS alone is down. Orders
keep being accepted, and every one is processed once when the endpoint returns, with
no manual restart."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.faults.conftest import FaultStack, own_stack
from tests.support.orders import Figures, OrderStream, read_store
from tests.support.stack import wait_for

pytestmark = pytest.mark.faults

#: How long each outage lasts.
OUTAGE_SECONDS = 10

SERVICES = ("email_service", "inventory_service", "analytics_service")


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A stack behind a FaultProxy; the relay publishes again what a restarted emulator
    lost, 10 s after publication."""
    with own_stack(
        tmp_path_factory, proxy=True, OUTBOX_REPUBLISH_AFTER="10", CONSUMER_CONCURRENCY="4"
    ) as fault_stack:
        yield fault_stack


def test_emulator_restart_without_its_state_loses_no_order(
    outage_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    fs = outage_stack
    emulator = fs.emulator
    tag = "emulator"
    fs.wait_idle()
    baseline = fs.ledger.baseline()
    with OrderStream(fs.api, tag, rate=10) as stream:
        stream.wait_accepted(30)
        # Freeze it, keep the mail it sent (a graceful stop would delete that record),
        # then kill it: everything in its queues is gone.
        assert emulator.pid is not None
        os.killpg(emulator.pid, signal.SIGSTOP)
        down_at = time.monotonic()
        kept = fs.ledger.keep_sent_mail(emulator.state_dir)
        os.killpg(emulator.pid, signal.SIGKILL)
        emulator.stop()
        before = len(stream.accepted)
        refused_before = stream.refused
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        during = len(stream.accepted) - before
        refused_during = stream.refused - refused_before
        emulator.start()  # same port; the init hook provisions everything again
        back_after = round(time.monotonic() - down_at, 1)
        stream.wait_accepted(len(stream.accepted) + 30)
    settle = fs.ledger.wait_settled(tag, timeout=150)
    figures = fs.ledger.account(
        "emulator killed, back without state", tag, stream.accepted, baseline, fs.dead_lettered()
    )
    figures.notes |= {
        "accepted_while_down": during,
        "mail_kept": kept,
        "back_after_s": back_after,
        "settle_s": settle,
    }
    record(figures)
    # The web took every order while the emulator was away.
    assert during >= 50
    assert refused_during == 0
    assert (figures.lost, figures.dead_lettered) == (0, 0)
    assert figures.notes["without_email"] == 0
    repeated = figures.notes["repeated"]
    assert (repeated["units"], repeated["counts"]) == (0, 0)
    # A send SES took just before it died, whose answer never came, is sent again
    # (see the email kill test): at most one per email handler thread.
    assert repeated["emails"] <= 4
    assert fs.stack.all_running()


def deliver_directly(fs: FaultStack, order_id: str) -> None:
    """Put an order's event on every service queue as SNS would have (raw delivery)."""
    [(body, attributes)] = read_store(
        fs.data_dir / "web.sqlite3",
        "SELECT body, attributes FROM outbox WHERE aggregate_id = ?",
        order_id,
    )
    for service in ("email", "inventory", "analytics"):
        name = fs.settings.topology.queue_for(service).name
        fs.clients.sqs.send_message(
            QueueUrl=fs.clients.sqs.get_queue_url(QueueName=name)["QueueUrl"],
            MessageBody=body,
            MessageAttributes=json.loads(attributes),
        )


def test_orders_posted_while_sns_is_down_are_published_later(
    outage_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    """The relay cannot publish, and a service that handled an order cannot publish its
    result: it waits and retries in place (the message stays in hand), so nothing is
    retried through the queue or dead-lettered."""
    fs = outage_stack
    assert fs.proxy is not None
    tag = "sns-down"
    fs.wait_idle()
    baseline, dead_before = fs.ledger.baseline(), fs.dead_lettered()
    logs_before = {p: len(fs.stack.log_text(p)) for p in SERVICES}
    fs.proxy.block("sns")
    try:
        with OrderStream(fs.api, tag, rate=10) as stream:
            stream.wait_accepted(1)
            # As if SNS had delivered this one just before it went down.
            deliver_directly(fs, stream.accepted[0])
            stream.wait_accepted(OUTAGE_SECONDS * 10 - 10)
            # Accepted and stored, but nothing could be published.
            unpublished = [fs.api.order(o)["published"] for o in stream.accepted]
    finally:
        fs.proxy.unblock("sns")
    refused = fs.proxy.refused.get("sns", 0)
    settle = fs.ledger.wait_settled(tag, timeout=60)
    figures = fs.ledger.account(
        "SNS down while orders are posted",
        tag,
        stream.accepted,
        baseline,
        fs.dead_lettered() - dead_before,
    )
    published = [fs.api.order(o)["published"] for o in stream.accepted]
    logs = {p: fs.stack.log_text(p)[logs_before[p] :] for p in SERVICES}
    waited = {p: log.count('"message": "endpoint failed, retrying"') for p, log in logs.items()}
    figures.notes |= {"sns_requests_refused": refused, "results_waited": waited, "settle_s": settle}
    record(figures)
    assert stream.refused == 0
    assert not any(unpublished)
    assert all(published)
    assert (figures.lost, figures.duplicated, figures.dead_lettered) == (0, 0, 0)
    # Each service held its result and retried in place, never through the queue.
    assert all(n > 0 for n in waited.values()), waited
    assert not any('"message": "handler failed, will retry"' in log for log in logs.values())


def test_programs_recover_without_a_restart(outage_stack: FaultStack) -> None:
    """No program was restarted by the outages: each recovered by itself."""
    wait_for(outage_stack.stack.all_running, 10, "every program RUNNING")
    log = (outage_stack.stack.log_dir / "supervisord.log").read_text()
    assert "exited:" not in log
