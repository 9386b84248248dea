"""Tables and the latency-vs-rate plot of the end-to-end and publisher parts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.core.results import ms, rate
from bench.e2e import calls
from bench.e2e.fanout import FanoutResult
from bench.e2e.ladder import StepResult
from bench.e2e.publisher import PostResult, RelayResult

E2E_HEAD = (
    "offered/s",
    "sent/s",
    "completed/s",
    "state",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "order p99 ms",
    "publish p50 ms",
    "POST p99 ms",
    "errors",
    "emulator CPU ms/order",
)


def e2e_rows(steps: Sequence[StepResult]) -> list[list[str]]:
    """One row per step."""
    rows = []
    for s in steps:
        state = "kept up" if s.kept_up else "saturated"
        if s.half_load:
            state += " (half load)"
        rows.append(
            [
                f"{s.offered:g}",
                rate(s.sent_rate, 1),
                rate(s.completed_rate, 1),
                state,
                ms(s.e2e, "p50"),
                ms(s.e2e, "p95"),
                ms(s.e2e, "p99"),
                ms(s.order_done, "p99"),
                ms(s.publish_lag, "p50"),
                ms(s.post, "p99"),
                str(s.errors),
                rate(s.emulator_cpu_ms, 1),
            ]
        )
    return rows


def e2e_notes(fanout: Sequence[FanoutResult]) -> str:
    """What the columns mean, and the fan-out ceiling runs."""
    lines = [
        "p50/p95/p99: order created -> each service's result recorded by the web (server-side "
        "timestamps, every (order, service) pair);",
        "order p99: -> the last of the three; publish: -> the relay published the event; "
        "POST: due -> 201 (client side)",
    ]
    for f in fanout:
        if f.status == "ok":
            lines.append(
                f"raw SNS fan-out, PublishBatch(10) to 3 raw-delivery queues, {f.threads} "
                f"thread(s): {rate(f.delivered_rate)} events/s delivered to all three "
                f"({rate(f.published_rate)}/s published)"
                + (f", emulator {f.emulator_cpu_ms:.2f} ms CPU/event" if f.emulator_cpu_ms else "")
            )
        else:
            lines.append(f"raw SNS fan-out, {f.threads} thread(s): {f.status} {f.detail}")
    return "\n".join(lines)


CALLS_HEAD = (
    "calls per order",
    *(op.split(".", 1)[1] for op in calls.SHOWN),
    "other",
    "total",
)


def calls_rows(
    steps: Sequence[StepResult], idle_per_minute: dict[str, float] | None
) -> list[list[str]]:
    """AWS calls per order by operation at each step, idle calls per minute, the floor."""
    rows = []
    for s in steps:
        if not s.calls:
            continue
        state = "kept up" if s.kept_up else "saturated"
        label = f"{s.offered:g}/s ({state}{', half load' if s.half_load else ''})"
        rows.append([label, *(f"{v:.2f}" for v in calls.grouped(s.calls_per_order))])
    if idle_per_minute:
        rows.append(["idle, per minute", *(f"{v:.1f}" for v in calls.grouped(idle_per_minute))])
    rows.append(["design minimum", *(f"{v:.2f}" for v in calls.grouped(calls.design_minimum()))])
    return rows


PUBLISHER_HEAD = ("what", "rate/s", "p50 ms", "p99 ms", "count")


def publisher_rows(
    posts: Sequence[PostResult], relay: RelayResult | None, ceiling: float | None
) -> list[list[str]]:
    """POST requests/s per client count, and the relay's rate against the raw ceiling."""
    rows = [
        [
            f"POST /api/orders, {p.clients} client thread(s), closed loop",
            rate(p.rate),
            ms(p.latency, "p50"),
            ms(p.latency, "p99"),
            str(p.accepted),
        ]
        for p in posts
    ]
    if relay is not None:
        share = f" ({relay.rate / ceiling:.0%} of raw fan-out)" if relay.rate and ceiling else ""
        rows.append(
            [
                f"outbox relay, commit -> published{share}",
                rate(relay.rate),
                "-",
                "-",
                str(relay.events),
            ]
        )
    return rows


def plot_e2e(
    path: Path,
    steps: Sequence[StepResult],
    ceiling: float | None,
    relay_rate: float | None,
    title: str,
) -> None:
    """Latency percentiles and completed rate against the offered rate (log scales)."""
    import matplotlib  # here, so Agg is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    ladder = sorted((s for s in steps if s.e2e and not s.half_load), key=lambda s: s.offered)
    halves = [s for s in steps if s.e2e and s.half_load]
    xs = [s.offered for s in ladder]
    fig, (lat_ax, rate_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for attr, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        ys = [getattr(s.e2e, attr) * 1000 for s in ladder]
        (line,) = lat_ax.plot(xs, ys, style, label=attr, markersize=4)
        # The half-load step ran later, on its own: a point of the same colour, unjoined.
        lat_ax.plot(
            [s.offered for s in halves],
            [getattr(s.e2e, attr) * 1000 for s in halves],
            style[0],
            color=line.get_color(),
            markerfacecolor="none",
            markersize=8,
        )
    for s in ladder:
        if not s.kept_up:
            lat_ax.axvspan(s.offered / 1.04, s.offered * 1.04, color="red", alpha=0.15)
    for s in halves:
        lat_ax.annotate(
            "half load (hollow)",
            (s.offered, s.e2e.p99 * 1000 if s.e2e else 0),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=8,
        )
    lat_ax.axhline(250, color="grey", linestyle=":", linewidth=1, label="250 ms")
    ticks = sorted({*xs, *(s.offered for s in halves)})
    for ax in (lat_ax, rate_ax):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        ax.yaxis.set_major_formatter(plain)
        ax.grid(True, which="both", alpha=0.3)
    lat_ax.set_xlabel("offered orders/s (open loop; red band: saturated)")
    lat_ax.set_ylabel("order created -> service result recorded (ms)")
    lat_ax.set_title("latency per (order, service)")
    lat_ax.legend(loc="upper left", fontsize=8)

    rate_ax.plot(xs, [s.completed_rate or float("nan") for s in ladder], "o-", label="completed/s")
    rate_ax.plot(
        [s.offered for s in halves],
        [s.completed_rate or float("nan") for s in halves],
        "o",
        markerfacecolor="none",
        color="tab:blue",
    )
    if xs:
        rate_ax.plot(xs, xs, color="grey", linestyle=":", linewidth=1, label="= offered")
    if ceiling:
        rate_ax.axhline(
            ceiling, color="tab:red", linestyle="--", label=f"raw SNS fan-out {ceiling:,.0f}/s"
        )
        rate_ax.axhline(0.6 * ceiling, color="tab:red", linestyle=":", label="60% of it")
    if relay_rate:
        rate_ax.axhline(
            relay_rate,
            color="tab:green",
            linestyle="--",
            label=f"outbox relay (backlog) {relay_rate:,.0f}/s",
        )
    rate_ax.set_xlabel("offered orders/s")
    rate_ax.set_ylabel("orders/s with all three results recorded")
    rate_ax.set_title("throughput (log scales)")
    rate_ax.legend(loc="center left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
