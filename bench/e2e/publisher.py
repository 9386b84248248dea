"""The publishing side alone: POST /api/orders through gunicorn in a closed loop, then the
outbox relay emptying the backlog those orders left.

The web's worker (the relay and the results consumer) is stopped while the clients post,
so the requests/s are the web's and SQLite's alone and every order stays in the outbox;
then the worker starts and the relay publishes the backlog as fast as it can.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from bench.core.stats import Latency, batch_rate
from bench.e2e.ladder import epoch, last_seq, wait_settled
from bench.e2e.load import closed_loop, order_body
from bench.e2e.stack import SKU, BenchStack
from pubsub_supervisor import db
from tests.support.stack import wait_for
from web.schema import orders, outbox

Say = Callable[[str], None]


@dataclass(frozen=True)
class PublisherPlan:
    """Client threads to try, and how long each closed loop runs."""

    clients: tuple[int, ...]
    seconds: float
    max_requests: int
    relay_timeout_s: float
    settle_timeout_s: float


FULL_PUBLISHER = PublisherPlan((1, 8), 10, 1000, 300, 240)
QUICK_PUBLISHER = PublisherPlan((1, 8), 3, 200, 120, 120)


@dataclass
class PostResult:
    """Closed-loop POSTs from `clients` threads."""

    clients: int
    seconds: float
    requests: int
    accepted: int
    rate: float | None
    latency: Latency | None


@dataclass
class RelayResult:
    """The relay publishing a backlog of `events` committed events."""

    events: int
    #: Events per second from the first batch published to the last.
    rate: float | None
    status: str
    batches: int = 0


def run_publisher(
    stack: BenchStack, plan: PublisherPlan, say: Say, base_index: int = 10_000_000
) -> tuple[list[PostResult], RelayResult]:
    """Closed-loop POSTs for each client count with the relay stopped, then the relay."""
    supervised = stack.supervised
    supervised.ctl("stop", "web_worker")
    wait_for(
        lambda: supervised.status().get("web_worker", ("",))[0] == "STOPPED",
        60,
        "web_worker stopped",
    )
    seq = last_seq(stack.engine)
    posts: list[PostResult] = []
    try:
        for clients in plan.clients:
            base = base_index + len(posts) * plan.max_requests
            sent = closed_loop(
                stack.base_url,
                functools.partial(_body, base),
                clients=clients,
                seconds=plan.seconds,
                max_requests=plan.max_requests,
            )
            accepted = [s for s in sent if s.status == 201]
            span = max((s.ended for s in sent), default=0) - min(
                (s.started for s in sent), default=0
            )
            result = PostResult(
                clients,
                round(span, 3),
                len(sent),
                len(accepted),
                len(accepted) / span if span > 0 else None,
                Latency.of([s.ended - s.started for s in accepted]),
            )
            posts.append(result)
            say("  " + describe_post(result))
    finally:
        supervised.ctl("start", "web_worker")
    relay = _relay(stack, seq, plan)
    say("  " + describe_relay(relay))
    expected = sum(p.accepted for p in posts)
    if not wait_settled(stack.engine, seq, plan.settle_timeout_s, expected):
        say("  (the services had not processed the whole backlog in time)")
    return posts, relay


def _body(base: int, index: int) -> bytes:
    return order_body(base + index, SKU)


def _relay(stack: BenchStack, seq: int, plan: PublisherPlan) -> RelayResult:
    newer = select(orders.c.id).where(orders.c.seq > seq)
    pending = (
        select(func.count())
        .select_from(outbox)
        .where(outbox.c.aggregate_id.in_(newer))
        .where(outbox.c.published_at.is_(None))
    )
    deadline = time.monotonic() + plan.relay_timeout_s
    status = "ok"
    while True:
        with db.read(stack.engine) as conn:
            left = int(conn.execute(pending).scalar_one())
        if left == 0:
            break
        if time.monotonic() > deadline:
            status = "timeout"
            break
        time.sleep(0.2)
    with db.read(stack.engine) as conn:
        published = [
            epoch(row.published_at)
            for row in conn.execute(
                select(outbox.c.published_at)
                .where(outbox.c.aggregate_id.in_(newer))
                .where(outbox.c.published_at.is_not(None))
            )
        ]
    return RelayResult(len(published), batch_rate(published), status, len(set(published)))


def describe_post(result: PostResult) -> str:
    """One progress line."""
    rate = f"{result.rate:,.0f} requests/s" if result.rate else "no rate"
    p99 = f"{result.latency.p99 * 1000:.0f} ms" if result.latency else "-"
    return (
        f"POST /api/orders, {result.clients} client thread(s): {result.accepted}/"
        f"{result.requests} in {result.seconds:.1f} s = {rate}, p99 {p99}"
    )


def describe_relay(result: RelayResult) -> str:
    """One progress line."""
    rate = f"{result.rate:,.0f} events/s" if result.rate else "no rate"
    return (
        f"outbox relay: {result.events} events in {result.batches} batches = {rate} "
        f"({result.status})"
    )
