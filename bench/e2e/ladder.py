"""End to end: orders POSTed at set rates to the web of a real supervisord stack, timed
from the order's creation to each service's `processed`, up to saturation.

Latency is read from the web's own store after each step: `orders.created_at` (taken as
the order is committed, just before the 201) and `order_services.updated_at` (taken when
the web's worker applies the service's result), both server-side UTC timestamps; the API
shows the same two values as `created_at` and `services.<name>.updated_at`. Reading the
store directly adds no load to the web while the next step runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, select

from bench.core.cpu import tree_cpu_s
from bench.core.results import ms
from bench.core.stats import Latency, completion_rate, kept_up, rate_ladder, step_size
from bench.e2e import calls
from bench.e2e.load import Sent, open_loop, order_body
from bench.e2e.stack import SKU, BenchStack
from pubsub_supervisor import db
from pubsub_supervisor.events import as_utc
from web.schema import order_services, orders, outbox

Say = Callable[[str], None]

#: Statuses a service ends an order with; anything else after settling is a failure.
FINAL = ("processed", "rejected", "failed")


@dataclass(frozen=True)
class LadderPlan:
    """How far and how long the rate ladder climbs."""

    start_rate: float
    factor: float
    max_steps: int
    step_seconds: float
    max_orders: int
    settle_timeout_s: float
    senders: int = 48


FULL_LADDER = LadderPlan(
    start_rate=10, factor=1.5, max_steps=14, step_seconds=15, max_orders=3000, settle_timeout_s=180
)
QUICK_LADDER = LadderPlan(
    start_rate=10, factor=2.5, max_steps=4, step_seconds=4, max_orders=400, settle_timeout_s=90
)


@dataclass
class OrderTimes:
    """One order's server-side timestamps, as epoch seconds."""

    order_id: str
    created: float
    published: float | None
    #: service -> (status, when the web recorded it)
    services: dict[str, tuple[str, float]]

    @property
    def done(self) -> float | None:
        """When the last service's result was recorded, once every service has one."""
        if any(status == "pending" for status, _ in self.services.values()):
            return None
        return max(at for _, at in self.services.values())


@dataclass
class StepResult:
    """One open-loop step at one offered rate."""

    offered: float
    orders: int
    #: POSTs answered 201, and the others (errors, timeouts, not sent in time).
    accepted: int = 0
    errors: int = 0
    #: Rate the client achieved, and completions per second (see `completion_rate`).
    sent_rate: float | None = None
    completed_rate: float | None = None
    settled: bool = False
    kept_up: bool = False
    #: Per (order, service) pair, created_at -> that service's result recorded.
    e2e: Latency | None = None
    #: Per order, created_at -> the last of its three results recorded.
    order_done: Latency | None = None
    #: Per order, created_at -> the relay published its event.
    publish_lag: Latency | None = None
    #: Per request, due -> 201 (client side).
    post: Latency | None = None
    per_service: dict[str, Latency | None] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    half_load: bool = False
    #: CPU per accepted order, in ms, from the step's start until it settled: the
    #: emulator's, and the stack's (supervisord and every program).
    emulator_cpu_ms: float | None = None
    stack_cpu_ms: float | None = None
    #: AWS calls of every program from the step's start until it settled, by operation.
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def calls_per_order(self) -> dict[str, float]:
        """`calls` divided by the accepted orders."""
        return calls.per_order(self.calls, self.accepted)


def epoch(value: datetime) -> float:
    """Epoch seconds of a stored time."""
    return as_utc(value).timestamp()


def last_seq(engine: Engine) -> int:
    """The newest order's sequence number (0 for none)."""
    with db.read(engine) as conn:
        return int(conn.execute(select(func.coalesce(func.max(orders.c.seq), 0))).scalar_one())


def pending_after(engine: Engine, seq: int) -> int:
    """Service statuses still pending among orders newer than `seq`."""
    newer = select(orders.c.id).where(orders.c.seq > seq)
    query = (
        select(func.count())
        .select_from(order_services)
        .where(order_services.c.order_id.in_(newer))
        .where(order_services.c.status == "pending")
    )
    with db.read(engine) as conn:
        return int(conn.execute(query).scalar_one())


def wait_settled(engine: Engine, seq: int, timeout: float, expected: int) -> bool:
    """Wait until every service reported on every order newer than `seq`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.read(engine) as conn:
            count = conn.execute(
                select(func.count()).select_from(orders).where(orders.c.seq > seq)
            ).scalar_one()
        if count >= expected and pending_after(engine, seq) == 0:
            return True
        time.sleep(0.25)
    return False


def order_times(engine: Engine, seq: int) -> list[OrderTimes]:
    """Timestamps of every order newer than `seq`."""
    published = (
        select(outbox.c.aggregate_id, func.min(outbox.c.published_at).label("published_at"))
        .group_by(outbox.c.aggregate_id)
        .subquery()
    )
    query = (
        select(
            orders.c.id,
            orders.c.created_at,
            published.c.published_at,
            order_services.c.service,
            order_services.c.status,
            order_services.c.updated_at,
        )
        .join(order_services, order_services.c.order_id == orders.c.id)
        .outerjoin(published, published.c.aggregate_id == orders.c.id)
        .where(orders.c.seq > seq)
    )
    by_id: dict[str, OrderTimes] = {}
    with db.read(engine) as conn:
        for row in conn.execute(query):
            times = by_id.get(row.id)
            if times is None:
                times = OrderTimes(
                    row.id,
                    epoch(row.created_at),
                    epoch(row.published_at) if row.published_at else None,
                    {},
                )
                by_id[row.id] = times
            times.services[row.service] = (row.status, epoch(row.updated_at))
    return list(by_id.values())


def summarize_step(
    step: StepResult, sent: Sequence[Sent], times: Sequence[OrderTimes], settled: bool
) -> StepResult:
    """Fill a step's figures from what the client saw and what the store recorded."""
    accepted = [s for s in sent if s.status == 201]
    step.accepted = len(accepted)
    step.errors = step.orders - len(accepted)
    if len(sent) > 1:
        span = max(s.started for s in sent) - min(s.started for s in sent)
        step.sent_rate = (len(sent) - 1) / span if span > 0 else None
    step.post = Latency.of([s.latency for s in accepted])
    ids = {s.order_id for s in accepted}
    mine = [t for t in times if t.order_id in ids]
    pairs: list[float] = []
    by_service: dict[str, list[float]] = {}
    statuses: dict[str, int] = {}
    for order in mine:
        for service, (status, at) in order.services.items():
            statuses[status] = statuses.get(status, 0) + 1
            if status == "processed":
                pairs.append(at - order.created)
                by_service.setdefault(service, []).append(at - order.created)
    step.statuses = statuses
    step.e2e = Latency.of(pairs)
    step.per_service = {name: Latency.of(values) for name, values in sorted(by_service.items())}
    done = [(order.done, order.created) for order in mine if order.done is not None]
    step.order_done = Latency.of([d - c for d, c in done])
    step.completed_rate = completion_rate([d for d, _ in done])
    step.publish_lag = Latency.of(
        [order.published - order.created for order in mine if order.published is not None]
    )
    step.settled = settled
    all_processed = statuses.get("processed", 0) == 3 * step.orders
    step.kept_up = (
        settled
        and all_processed
        and kept_up(step.offered, step.completed_rate)
        and step.sent_rate is not None
        and kept_up(step.offered, step.sent_rate)
    )
    return step


class E2E:
    """Open-loop steps against one running stack."""

    def __init__(
        self, stack: BenchStack, plan: LadderPlan, say: Say, emulator_pid: int | None = None
    ) -> None:
        self.stack = stack
        self.plan = plan
        self.say = say
        self.emulator_pid = emulator_pid
        self._sent_total = 0

    def _cpu(self) -> tuple[float | None, float | None]:
        stack_proc = self.stack.supervised.proc
        return (
            tree_cpu_s(self.emulator_pid) if self.emulator_pid else None,
            tree_cpu_s(stack_proc.pid) if stack_proc else None,
        )

    def _body(self, base: int) -> Callable[[int], bytes]:
        return lambda index: order_body(base + index, SKU)

    def step(self, rate: float, *, half_load: bool = False) -> StepResult:
        """Send one step at `rate`, wait until it settled, and measure it."""
        plan = self.plan
        count = step_size(rate, plan.step_seconds, plan.max_orders)
        seq = last_seq(self.stack.engine)
        cpu_before = self._cpu()
        started = time.time()
        sent = open_loop(
            self.stack.base_url,
            self._body(self._sent_total),
            rate=rate,
            count=count,
            senders=plan.senders,
            # Time for the schedule and a little more; a client that falls far behind
            # means the web cannot take the rate, and the step ends.
            max_seconds=count / rate * 1.5 + 5,
        )
        self._sent_total += count
        accepted = sum(1 for s in sent if s.status == 201)
        settled = wait_settled(self.stack.engine, seq, plan.settle_timeout_s, accepted)
        cpu_after = self._cpu()
        step = summarize_step(
            StepResult(rate, count, half_load=half_load),
            sent,
            order_times(self.stack.engine, seq),
            settled,
        )
        step.calls = calls.count(calls.read(self.stack.call_log), started, time.time())
        if accepted:
            step.emulator_cpu_ms, step.stack_cpu_ms = (
                (after - before) * 1000 / accepted
                if after is not None and before is not None
                else None
                for before, after in zip(cpu_before, cpu_after, strict=True)
            )
        self.say("  " + describe(step))
        return step

    def idle_calls(self, seconds: float) -> dict[str, float]:
        """AWS calls per minute, by operation, while no order comes in for `seconds`."""
        started = time.time()
        time.sleep(seconds)
        counts = calls.count(calls.read(self.stack.call_log), started, time.time())
        return {op: n * 60 / seconds for op, n in counts.items()}

    def ladder(self) -> list[StepResult]:
        """Climb the rate ladder until a step does not keep up (saturation)."""
        steps: list[StepResult] = []
        for rate in rate_ladder(self.plan.start_rate, self.plan.factor, self.plan.max_steps):
            self.say(f" e2e step: {rate:g} orders/s")
            step = self.step(rate)
            steps.append(step)
            if not step.kept_up:
                break
            # A moment of quiet between steps, so one step's tail is not the next one's.
            time.sleep(1)
        return steps


def sustained_rate(steps: Sequence[StepResult]) -> float | None:
    """The highest completion rate of a step that kept up."""
    rates = [s.completed_rate for s in steps if s.kept_up and s.completed_rate]
    return max(rates) if rates else None


def peak_rate(steps: Sequence[StepResult]) -> float | None:
    """The highest completion rate of any step (under overload: what the stack drains)."""
    rates = [s.completed_rate for s in steps if s.completed_rate]
    return max(rates) if rates else None


def describe(step: StepResult) -> str:
    """One progress line for a step."""
    rate = f"{step.completed_rate:.1f}/s" if step.completed_rate else "-"
    return (
        f"{'kept up' if step.kept_up else 'SATURATED'}: {step.accepted}/{step.orders} accepted, "
        f"completed {rate}, e2e p50/p95/p99 {ms(step.e2e, 'p50')}/{ms(step.e2e, 'p95')}/"
        f"{ms(step.e2e, 'p99')} ms, publish lag p50 {ms(step.publish_lag, 'p50')} ms"
        + (f", emulator {step.emulator_cpu_ms:.1f} ms CPU/order" if step.emulator_cpu_ms else "")
        + (f", {sum(step.calls_per_order.values()):.2f} AWS calls/order" if step.calls else "")
        + ("" if step.settled else " (not settled in time)")
    )
