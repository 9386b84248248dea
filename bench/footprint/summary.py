"""The footprint part's table and notes."""

from __future__ import annotations

from bench.footprint.measure import DevStartup, Footprint

FOOTPRINT_HEAD = (
    "process",
    "idle RSS MB",
    "idle PSS MB",
    "idle CPU %",
    "load RSS MB",
    "load CPU %",
)


def footprint_rows(idle: Footprint, load: Footprint | None) -> list[list[str]]:
    """Per program (web master and workers apart), then the totals."""
    loaded = {p.pid: p for p in load.processes} if load else {}

    def num(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    rows = []
    for p in idle.processes:
        name = p.program + (f" ({p.role})" if p.role else "")
        under = loaded.get(p.pid)
        rows.append(
            [
                name,
                num(p.rss_mb, 0),
                num(p.pss_mb, 0),
                num(p.cpu_percent, 2),
                num(under.rss_mb, 0) if under else "-",
                num(under.cpu_percent, 1) if under else "-",
            ]
        )
    for scope, label in (
        ("programs", "the five programs"),
        ("tree", "whole tree (+ supervisord, listeners)"),
    ):
        idle_totals = idle.totals()
        load_totals = load.totals() if load else {}
        rows.append(
            [
                label,
                num(idle_totals[f"{scope}_rss_mb"], 0),
                num(idle_totals[f"{scope}_pss_mb"], 0),
                num(idle_totals[f"{scope}_cpu_percent"], 2),
                num(load_totals.get(f"{scope}_rss_mb"), 0),
                num(load_totals.get(f"{scope}_cpu_percent"), 1),
            ]
        )
    return rows


def footprint_notes(
    idle: Footprint, relay_cost: dict[str, float] | None, dev: DevStartup | None
) -> str:
    """The idle window, the relay's share, and the start-up time."""
    lines = [
        f"idle: {idle.seconds:.0f} s with nothing to do; CPU in % of one core; "
        "PSS divides shared pages among their sharers (the gunicorn workers share the master's)"
    ]
    if relay_cost:
        lines.append(
            f"outbox relay: {relay_cost['cpu_ms_per_poll']:.2f} ms CPU per empty poll every "
            f"{relay_cost['poll_interval_s']:g} s = {relay_cost['cpu_percent']:.2f}% of a core"
        )
    if dev is not None:
        if dev.ready_s is not None:
            emulator = f", of which LocalStack {dev.emulator_s:.1f} s" if dev.emulator_s else ""
            lines.append(f"make dev -> /readyz 200: {dev.ready_s:.1f} s{emulator}")
        else:
            lines.append(f"make dev: {dev.status} {dev.detail}")
    return "\n".join(lines)
