"""Outages: the emulator dies and comes back without its state; SNS alone is down. Orders
keep being accepted, and every one is processed once when the endpoint returns, with
no manual restart."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.faults.conftest import FaultStack, own_stack
from tests.support.orders import Figures, OrderStream
from tests.support.stack import wait_for

pytestmark = pytest.mark.faults

#: How long each outage lasts.
OUTAGE_SECONDS = 10


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A stack behind a FaultProxy; the relay publishes again what a restarted emulator
    lost, 10 s after publication."""
    with own_stack(tmp_path_factory, proxy=True, OUTBOX_REPUBLISH_AFTER="10") as fault_stack:
        yield fault_stack


def test_emulator_restart_without_its_state_loses_no_order(
    outage_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    fs = outage_stack
    emulator = fs.emulator
    tag = "emulator"
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
    settle = fs.ledger.wait_settled(tag, timeout=90)
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
    assert (figures.lost, figures.duplicated, figures.dead_lettered) == (0, 0, 0)
    assert fs.stack.all_running()


def test_orders_posted_while_sns_is_down_are_published_later(
    outage_stack: FaultStack, record: Callable[[Figures], None]
) -> None:
    fs = outage_stack
    assert fs.proxy is not None
    tag = "sns-down"
    baseline = fs.ledger.baseline()
    fs.proxy.block("sns")
    try:
        with OrderStream(fs.api, tag, rate=10) as stream:
            stream.wait_accepted(OUTAGE_SECONDS * 10 - 10)
            # Accepted and stored, but nothing could be published.
            unpublished = [fs.api.order(o)["published"] for o in stream.accepted]
    finally:
        fs.proxy.unblock("sns")
    refused = fs.proxy.refused.get("sns", 0)
    settle = fs.ledger.wait_settled(tag, timeout=60)
    figures = fs.ledger.account(
        "SNS down while orders are posted", tag, stream.accepted, baseline, fs.dead_lettered()
    )
    published = [fs.api.order(o)["published"] for o in stream.accepted]
    figures.notes |= {"sns_requests_refused": refused, "settle_s": settle}
    record(figures)
    assert stream.refused == 0
    assert not any(unpublished)
    assert refused > 0
    assert all(published)
    assert (figures.lost, figures.duplicated, figures.dead_lettered) == (0, 0, 0)


def test_programs_recover_without_a_restart(outage_stack: FaultStack) -> None:
    """No program was restarted by the outages: each recovered by itself."""
    wait_for(outage_stack.stack.all_running, 10, "every program RUNNING")
    log = (outage_stack.stack.log_dir / "supervisord.log").read_text()
    assert "exited:" not in log
