"""Performance benchmark: consumer drain, end to end through the whole stack, footprint.

Usage: python -m bench [all|drain|e2e|footprint] [--quick] [--out DIR] [--only NAMES]
                       [--messages N] [--repeat R] [--timeout S] [--endpoint URL]
       python -m bench report [--from FILE] [--out DIR]   (tables and plots again)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from bench.core import results, targets
from bench.core.results import write_json
from bench.core.stats import Latency
from bench.drain.contenders.specs import CONTENDERS, select
from bench.drain.harness import RunResult
from bench.drain.report import build_rows, drain_figures, drain_markdown, plot
from bench.drain.run import (
    FULL_MESSAGES,
    FULL_TIMEOUT_S,
    HANDLERS,
    QUICK_MESSAGES,
    QUICK_TIMEOUT_S,
    DrainOutcome,
    run_drain,
)
from bench.e2e import fanout, publisher, summary
from bench.e2e import ladder as e2e
from bench.e2e.stack import running_stack
from bench.footprint import measure as footprint
from bench.footprint.summary import FOOTPRINT_HEAD, footprint_notes, footprint_rows
from devtools.emulator import STACK_SERVICES, NativeLocalStack, free_port
from pubsub_ops.tables import table

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("drain", "e2e", "footprint")
#: Idle window for counting calls: longer than one long poll (20 s), so every poller shows.
IDLE_CALLS_SECONDS = 30.0


@dataclass(frozen=True)
class Plan:
    """Sizes of every part, full or quick."""

    ladder: e2e.LadderPlan
    publisher: publisher.PublisherPlan
    fanout_events: int
    fanout_threads: tuple[int, ...]
    idle_seconds: float
    #: A load window for the footprint when the e2e part does not run.
    footprint_load: tuple[float, float]
    dev_timeout_s: float


FULL = Plan(e2e.FULL_LADDER, publisher.FULL_PUBLISHER, 3000, (1, 4), 30, (20, 15), 300)
QUICK = Plan(e2e.QUICK_LADDER, publisher.QUICK_PUBLISHER, 500, (1, 4), 10, (20, 5), 300)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "part",
        nargs="?",
        default="all",
        choices=("all", *PARTS, "report"),
        help="what to run (all); report: print and draw a results file again",
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="report: the results file (default: OUT/latest.json)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts, short windows")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="where results go"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"drain: comma-separated contenders, from: {','.join(CONTENDERS)}",
    )
    parser.add_argument("--messages", type=int, help="drain: messages per queue")
    parser.add_argument("--repeat", type=int, default=1, help="drain: runs per cell (median)")
    parser.add_argument("--timeout", type=float, help="drain: seconds per run before a timeout")
    parser.add_argument(
        "--endpoint", help="use this running emulator (127.0.0.1 only) instead of starting one"
    )
    return parser.parse_args(argv)


def say(line: str) -> None:
    """Progress goes to stdout as it happens."""
    print(line, flush=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def emulator(endpoint: str | None, state_root: Path) -> Iterator[tuple[str, int | None]]:
    """The endpoint to use and the emulator's pid when this run started it."""
    if endpoint:
        if not endpoint.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise SystemExit("--endpoint must be on 127.0.0.1")
        yield endpoint, None
        return
    # No init hooks: the drain makes its own queues, the e2e part applies the topology.
    init_dir = state_root / "init"
    (init_dir / "ready.d").mkdir(parents=True)
    localstack = NativeLocalStack(
        port=free_port(),
        state_dir=state_root / "localstack",
        init_dir=init_dir,
        venv=ROOT / ".venv-localstack",
        services=STACK_SERVICES,
    )
    say(f"starting native LocalStack on {localstack.endpoint_url} ...")
    started = time.monotonic()
    localstack.start()
    say(f"LocalStack ready in {time.monotonic() - started:.1f} s")
    try:
        yield localstack.endpoint_url, localstack.pid
    finally:
        localstack.stop()


def machine(endpoint: str) -> dict[str, Any]:
    """What a reader needs to know to compare this run with another."""
    emulator_version = None
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as response,
    ):
        emulator_version = json.load(response).get("version")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "emulator": {"kind": "localstack (native)", "version": emulator_version},
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "machine": platform.machine(),
        "load_avg_at_start": os.getloadavg()[0],
    }


@dataclass
class Run:
    """What one invocation measured."""

    drain: DrainOutcome | None = None
    steps: list[e2e.StepResult] = field(default_factory=list)
    fanout: list[fanout.FanoutResult] = field(default_factory=list)
    posts: list[publisher.PostResult] = field(default_factory=list)
    relay: publisher.RelayResult | None = None
    idle: footprint.Footprint | None = None
    idle_after: footprint.Footprint | None = None
    load: footprint.Footprint | None = None
    relay_cost: dict[str, float] | None = None
    dev: footprint.DevStartup | None = None
    load_avg: list[float] = field(default_factory=list)
    #: AWS calls per minute by operation while the stack is idle.
    idle_calls: dict[str, float] = field(default_factory=dict)
    #: Parts that ended with an error (what was measured before it is still reported).
    errors: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def part(self, name: str, emulator_pid: int | None = None) -> Iterator[None]:
        """Run one part; an error ends that part only, and is reported as a failure."""
        try:
            yield
        except Exception as exc:
            error = f"{name}: {type(exc).__name__}: {exc}"
            if emulator_pid is not None and not psutil.pid_exists(emulator_pid):
                error += " (the emulator is gone: it exited or was killed during the run)"
            say(f"FAILED {error}")
            self.errors.append(error)

    def note_load(self) -> None:
        """Keep the 1-minute load average as each part starts."""
        self.load_avg.append(round(os.getloadavg()[0], 2))


def run_stack_parts(
    run: Run, parts: set[str], plan: Plan, endpoint: str, emulator_pid: int | None, workdir: Path
) -> None:
    """The parts that need the whole stack under supervisord."""
    with running_stack(endpoint, workdir / "stack", say) as stack:
        if "footprint" in parts:
            time.sleep(5)  # start-up work (imports, first polls) out of the idle window
            say(f"footprint: idle for {plan.idle_seconds:.0f} s")
            run.note_load()
            run.idle = footprint.idle(stack, plan.idle_seconds)
        runner = e2e.E2E(stack, plan.ladder, say, emulator_pid)
        if "e2e" in parts:
            seconds = max(IDLE_CALLS_SECONDS, plan.idle_seconds)
            say(f"AWS calls while idle, {seconds:.0f} s")
            run.idle_calls = runner.idle_calls(seconds)
            say("raw SNS fan-out ceiling (PublishBatch to 3 raw-delivery queues)")
            run.note_load()
            for threads in plan.fanout_threads:
                run.fanout.append(
                    fanout.run_fanout(
                        endpoint,
                        events=plan.fanout_events,
                        threads=threads,
                        timeout_s=120,
                        say=say,
                        emulator_pid=emulator_pid,
                    )
                )
            say("end to end: open-loop rate ladder")
            run.note_load()
            with footprint.sampled(stack, "load") as load:
                run.steps = runner.ladder()
            run.load = load[0]
            sustained = e2e.sustained_rate(run.steps)
            if sustained:
                half = round(sustained / 2, 1)
                say(f" e2e half-load step: {half:g} orders/s")
                run.steps.append(runner.step(half, half_load=True))
            say("publisher: closed-loop POSTs (relay stopped), then the relay's backlog")
            run.note_load()
            run.posts, run.relay = publisher.run_publisher(stack, plan.publisher, say)
        elif "footprint" in parts:
            offered, seconds = plan.footprint_load
            say(f"footprint: load of {offered:g} orders/s for {seconds:g} s")
            with footprint.sampled(stack, "load") as load:
                runner.step(offered)
            run.load = load[0]
        if "footprint" in parts:
            run.relay_cost = footprint.relay_poll_cost(stack)
            time.sleep(5)
            say(f"footprint: idle after the load, {plan.idle_seconds:.0f} s")
            run.idle_after = footprint.idle(stack, plan.idle_seconds)


def figures(run: Run) -> targets.Figures:
    """The numbers the targets are computed from."""
    values: dict[str, Any] = drain_figures(run.drain.rows) if run.drain else {}
    sustained = e2e.sustained_rate(run.steps)
    half = [s for s in run.steps if s.half_load and s.e2e]
    values |= {
        "e2e_sustained": sustained,
        "fanout_ceiling": fanout.ceiling(run.fanout),
        "half_load_p99_ms": half[-1].e2e.p99 * 1000 if half and half[-1].e2e else None,
    }
    if run.idle is not None:
        totals = run.idle.totals()
        values["idle_cpu_percent"] = totals["programs_cpu_percent"]
        values["idle_rss_mb"] = totals["programs_rss_mb"]
    return targets.Figures(**values)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width table of a part: the first column a label, the others figures."""
    return table(head, rows, right=range(1, len(head)))


def report(run: Run, meta: dict[str, Any], out: Path, *, save: bool = True) -> None:
    """Print the tables, draw the plots, and write the JSON (when `save`) and summary.md."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    load = ", ".join(f"{v:.1f}" for v in run.load_avg)
    say(
        f"\nMachine: {meta['cpus']} CPUs, {meta['memory_gb']} GB, Python {meta['python']}, "
        f"LocalStack {meta['emulator']['version']} (native); load average as parts began: {load}"
    )
    if run.drain:
        say(f"\nConsumer drain: {run.drain.messages} messages of 500 B per queue")
        say(run.drain.tables())
        plot(
            out / "drain.png",
            run.drain.rows,
            run.drain.handlers,
            f"SQS drain, {run.drain.messages} msgs, native LocalStack ({stamp})",
        )
    ceiling = fanout.ceiling(run.fanout)
    if run.steps:
        say("\nEnd to end (POST -> outbox -> SNS -> 3 services -> results -> web)")
        say(_table(summary.E2E_HEAD, summary.e2e_rows(run.steps)))
        say(summary.e2e_notes(run.fanout))
        say(_table(summary.CALLS_HEAD, summary.calls_rows(run.steps, run.idle_calls)))
        sustained = e2e.sustained_rate(run.steps)
        say(
            f"sustained: {results.rate(sustained, 1)} orders/s; peak completed: "
            f"{results.rate(e2e.peak_rate(run.steps), 1)} orders/s; "
            f"raw fan-out ceiling: {results.rate(ceiling)} events/s"
        )
        summary.plot_e2e(
            out / "e2e.png",
            run.steps,
            ceiling,
            run.relay.rate if run.relay else None,
            f"End to end through the whole stack, native LocalStack ({stamp})",
        )
    if run.posts or run.relay:
        say("\nPublisher")
        say(_table(summary.PUBLISHER_HEAD, summary.publisher_rows(run.posts, run.relay, ceiling)))
    if run.idle:
        say("\nFootprint")
        say(
            _table(
                FOOTPRINT_HEAD,
                footprint_rows(run.idle, run.load),
            )
        )
        say(footprint_notes(run.idle, run.relay_cost, run.dev))
        if run.idle_after:
            totals = run.idle_after.totals()
            say(
                f"idle again after the load: programs {results.rate(totals['programs_rss_mb'])} MB "
                f"RSS, {results.rate(totals['programs_cpu_percent'], 2)}% CPU"
            )
    verdicts = targets.evaluate(figures(run))
    say("\nTargets")
    say(targets.format_targets(verdicts))
    document = to_document(run, meta, verdicts)
    if save:
        write_json(out / f"{stamp}.json", document)
        write_json(out / "latest.json", document)
    (out / "summary.md").write_text(markdown_report(run, meta, verdicts))
    say(f"\nwrote {out / f'{stamp}.json'}, latest.json, summary.md and the plots in {out}")


def to_document(run: Run, meta: dict[str, Any], verdicts: list[targets.Target]) -> dict[str, Any]:
    """Everything measured, for the results file (`load` reads it back)."""
    return {
        "meta": {**meta, "load_avg_by_part": run.load_avg},
        "drain": run.drain.to_json() if run.drain else None,
        "e2e": {
            "steps": results.jsonable(run.steps),
            "sustained": e2e.sustained_rate(run.steps),
            "peak": e2e.peak_rate(run.steps),
            "fanout": results.jsonable(run.fanout),
            "fanout_ceiling": fanout.ceiling(run.fanout),
            "idle_calls_per_minute": run.idle_calls,
        },
        "publisher": {"posts": results.jsonable(run.posts), "relay": results.jsonable(run.relay)},
        "footprint": {
            "idle": results.jsonable(run.idle),
            "idle_totals": run.idle.totals() if run.idle else None,
            "load": results.jsonable(run.load),
            "load_totals": run.load.totals() if run.load else None,
            "idle_after": results.jsonable(run.idle_after),
            "relay_poll": run.relay_cost,
            "dev_startup": results.jsonable(run.dev),
        },
        "targets": [
            {"name": t.name, "value": t.value, "bound": t.bound, "op": t.op, "met": t.met}
            for t in verdicts
        ],
    }


def markdown_report(run: Run, meta: dict[str, Any], verdicts: list[targets.Target]) -> str:
    """The same tables in Markdown, to paste into the README."""
    load = ", ".join(f"{v:.1f}" for v in run.load_avg)
    parts = [
        f"{meta['cpus']} CPUs, {meta['memory_gb']} GB, Python {meta['python']}, LocalStack "
        f"{meta['emulator']['version']} (native); load average as the parts began: {load}"
    ]
    if run.drain:
        parts.append(drain_markdown(run.drain.rows, run.drain.handlers))
    ceiling = fanout.ceiling(run.fanout)
    if run.steps:
        parts.append(results.markdown(summary.E2E_HEAD, summary.e2e_rows(run.steps)))
        parts.append(summary.e2e_notes(run.fanout).replace("\n", "  \n"))
        parts.append(
            results.markdown(summary.CALLS_HEAD, summary.calls_rows(run.steps, run.idle_calls))
        )
    if run.posts or run.relay:
        rows = summary.publisher_rows(run.posts, run.relay, ceiling)
        parts.append(results.markdown(summary.PUBLISHER_HEAD, rows))
    if run.idle:
        rows = footprint_rows(run.idle, run.load)
        parts.append(results.markdown(FOOTPRINT_HEAD, rows))
        parts.append(footprint_notes(run.idle, run.relay_cost, run.dev).replace("\n", "  \n"))
    parts.append(results.markdown(targets.HEAD, targets.rows(verdicts, missed="**no**")))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    """Run the chosen parts and report them."""
    args = parse_args(argv)
    if args.part == "report":
        source = args.source or args.out / "latest.json"
        run, meta = load(json.loads(source.read_text()))
        report(run, meta, args.out, save=False)
        return 0
    parts = set(PARTS) if args.part == "all" else {args.part}
    plan = QUICK if args.quick else FULL
    try:
        specs = select([name for name in args.only.split(",") if name])
    except ValueError as exc:
        say(str(exc))
        return 2
    # Both end the run the same way; SIGINT too, as a shell may start us ignoring it.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    run = Run()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        with emulator(args.endpoint, workdir) as (endpoint, emulator_pid):
            meta = machine(endpoint)
            if "drain" in parts:
                say("consumer drain")
                run.note_load()
                with run.part("drain", emulator_pid):
                    run.drain = run_drain(
                        specs,
                        endpoint=endpoint,
                        emulator_pid=emulator_pid,
                        workdir=workdir / "runs",
                        logdir=args.out / "logs",
                        messages=args.messages or (QUICK_MESSAGES if args.quick else FULL_MESSAGES),
                        timeout_s=args.timeout
                        or (QUICK_TIMEOUT_S if args.quick else FULL_TIMEOUT_S),
                        repeat=args.repeat,
                        say=say,
                    )
            if parts & {"e2e", "footprint"}:
                with run.part("stack", emulator_pid):
                    run_stack_parts(run, parts, plan, endpoint, emulator_pid, workdir)
        if "footprint" in parts:
            # After the benchmark's own emulator stopped: `make dev` starts its own.
            say("footprint: time from `python -m devtools.dev` to /readyz")
            run.note_load()
            with run.part("make dev"):
                run.dev = footprint.dev_startup(workdir / "dev", plan.dev_timeout_s, say)
    except KeyboardInterrupt:
        say("interrupted: workers, stack and emulator stopped")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(run, meta, args.out)
    return 1 if failures(run) else 0


def _latency(value: dict[str, Any] | None) -> Latency | None:
    return Latency(**value) if value else None


def load(document: dict[str, Any]) -> tuple[Run, dict[str, Any]]:
    """A Run back from its results file."""
    run = Run(load_avg=document["meta"].get("load_avg_by_part", []))
    drain = document.get("drain")
    if drain:
        results = [RunResult(**r) for r in drain["runs"]]
        rows = build_rows(results, [name for name, _ in HANDLERS])
        run.drain = DrainOutcome(
            drain["messages"], drain["timeout_s"], drain["repeat"], results, rows
        )
    latencies = ("e2e", "order_done", "publish_lag", "post")
    for raw in document["e2e"]["steps"]:
        step = e2e.StepResult(
            **{k: v for k, v in raw.items() if k not in (*latencies, "per_service")}
        )
        for name in latencies:
            setattr(step, name, _latency(raw[name]))
        step.per_service = {k: _latency(v) for k, v in raw["per_service"].items()}
        run.steps.append(step)
    run.fanout = [fanout.FanoutResult(**f) for f in document["e2e"]["fanout"]]
    run.idle_calls = document["e2e"].get("idle_calls_per_minute") or {}
    pub = document["publisher"]
    run.posts = [
        publisher.PostResult(**{**p, "latency": _latency(p["latency"])}) for p in pub["posts"]
    ]
    run.relay = publisher.RelayResult(**pub["relay"]) if pub["relay"] else None
    fp = document["footprint"]

    def footprint_of(raw: dict[str, Any] | None) -> footprint.Footprint | None:
        if not raw:
            return None
        processes = [footprint.ProcessFootprint(**p) for p in raw["processes"]]
        return footprint.Footprint(raw["phase"], raw["seconds"], processes)

    run.idle, run.load, run.idle_after = (
        footprint_of(fp["idle"]),
        footprint_of(fp["load"]),
        footprint_of(fp["idle_after"]),
    )
    run.relay_cost = fp["relay_poll"]
    run.dev = footprint.DevStartup(**fp["dev_startup"]) if fp["dev_startup"] else None
    return run, document["meta"]


def failures(run: Run) -> list[str]:
    """What makes the run fail (a saturated step or a timeout does not)."""
    found = list(run.errors)
    if run.drain is not None and run.drain.failed:
        found.append("a drain run failed")
    ladder = [s for s in run.steps if not s.half_load]
    if ladder and not ladder[0].kept_up:
        found.append(f"the stack did not keep up with {ladder[0].offered:g} orders/s")
    if any(s.statuses.get("failed") for s in run.steps):
        found.append("orders ended `failed`")
    if run.relay is not None and run.relay.status != "ok":
        found.append("the outbox relay did not publish its backlog in time")
    if run.dev is not None and run.dev.status != "ok":
        found.append("`make dev` did not become ready")
    for line in found:
        say(f"FAILED: {line}")
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
