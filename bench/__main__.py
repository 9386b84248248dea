"""Consumer drain benchmark: every contender empties an identical pre-filled SQS queue.

Usage: python -m bench [--quick] [--out DIR] [--only NAMES] [--messages N] [--repeat R]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import payload
from bench.contenders.specs import CONTENDERS, select
from bench.harness import Harness, RunResult, Workload
from bench.report import (
    build_rows,
    format_cost_table,
    format_table,
    plot,
    to_json,
    write_json,
)
from pubsub_supervisor.emulator import NativeLocalStack, free_port

ROOT = Path(__file__).resolve().parent.parent
#: The handlers every contender runs: a no-op, and a 5 ms sleep standing in for I/O.
HANDLERS: tuple[tuple[str, float], ...] = (("no-op", 0.0), ("5ms-io", 5.0))
FULL_MESSAGES, QUICK_MESSAGES = 3000, 300
#: Per-run limit on the worker's life (start-up included); past it the run is a timeout.
FULL_TIMEOUT_S, QUICK_TIMEOUT_S = 90.0, 30.0
LIBRARIES = ("boto3", "celery", "kombu", "dramatiq", "dramatiq-sqs", "sqs-workers")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small queues, short timeouts")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="where results go"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated contenders to run, from: {','.join(CONTENDERS)}",
    )
    parser.add_argument("--messages", type=int, help="messages per queue (overrides --quick)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (median reported)")
    parser.add_argument("--timeout", type=float, help="seconds per run before it is a timeout")
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
    # No init hooks: every run makes its own queues, and the project's topology is not needed.
    init_dir = state_root / "init"
    (init_dir / "ready.d").mkdir(parents=True)
    localstack = NativeLocalStack(
        port=free_port(),
        state_dir=state_root / "localstack",
        init_dir=init_dir,
        venv=ROOT / ".venv-localstack",
    )
    say(f"starting native LocalStack on {localstack.endpoint_url} ...")
    started = time.monotonic()
    localstack.start()
    say(f"LocalStack ready in {time.monotonic() - started:.1f} s")
    try:
        yield localstack.endpoint_url, localstack.pid
    finally:
        localstack.stop()


def meta(args: argparse.Namespace, endpoint: str, messages: int, timeout: float) -> dict[str, Any]:
    """What a reader needs to know to compare this run with another."""
    versions = {}
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    emulator_version = None
    health = f"{endpoint}/_localstack/health"
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(health, timeout=2) as response,
    ):
        emulator_version = json.load(response).get("version")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "messages": messages,
        "body_bytes": payload.BODY_BYTES,
        "repeat": args.repeat,
        "timeout_s": timeout,
        "quick": args.quick,
        "handlers": {name: work_ms for name, work_ms in HANDLERS},
        "emulator": {"kind": "localstack (native)", "version": emulator_version},
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_at_start": os.getloadavg()[0],
        "machine": platform.machine(),
        "libraries": versions,
    }


def main(argv: list[str]) -> int:
    """Run the benchmark and write the table, the JSON and the plot."""
    args = parse_args(argv)
    messages = args.messages or (QUICK_MESSAGES if args.quick else FULL_MESSAGES)
    timeout = args.timeout or (QUICK_TIMEOUT_S if args.quick else FULL_TIMEOUT_S)
    try:
        specs = select([name for name in args.only.split(",") if name])
    except ValueError as exc:
        say(str(exc))
        return 2
    # Both end the run the same way; SIGINT too, as a shell may start us ignoring it.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    results: list[RunResult] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    total = len(specs) * len(HANDLERS) * args.repeat
    try:
        with emulator(args.endpoint, workdir) as (endpoint, emulator_pid):
            harness = Harness(
                endpoint,
                workdir / "runs",
                logdir=args.out / "logs",
                emulator_pid=emulator_pid,
                say=say,
            )
            document_meta = meta(args, endpoint, messages, timeout)
            try:
                for repeat in range(args.repeat):
                    # Each repeat starts further down the list, so a contender does not
                    # always meet the same moment of a shared machine's load.
                    shift = repeat * len(specs) // args.repeat
                    for spec in specs[shift:] + specs[:shift]:
                        for handler, work_ms in HANDLERS:
                            n = len(results) + 1
                            say(
                                f"[{n}/{total}] {spec.key} / {handler}"
                                + (f" (repeat {repeat + 1})" if args.repeat > 1 else "")
                            )
                            load = Workload(handler, work_ms, messages, timeout)
                            results.append(harness.run(spec, load))
            finally:
                harness.children.stop_all()
    except KeyboardInterrupt:
        say("interrupted: workers and emulator stopped")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    handlers = [name for name, _ in HANDLERS]
    rows = build_rows(results, handlers)
    say("")
    say(
        f"Consumer drain: {messages} messages of {payload.BODY_BYTES} B per queue, "
        f"native LocalStack on 127.0.0.1, {os.cpu_count()} CPUs shared "
        f"(load average {document_meta['load_avg_at_start']:.1f} at start)"
    )
    say(format_table(rows, handlers))
    say("")
    say(format_cost_table(rows, handlers[0]))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = to_json(document_meta, results, rows)
    write_json(args.out / f"{stamp}.json", document)
    write_json(args.out / "latest.json", document)
    plot(
        args.out / "drain.png",
        rows,
        handlers,
        f"SQS drain, {messages} msgs, native LocalStack ({stamp})",
    )
    say(f"\nwrote {args.out / f'{stamp}.json'}, latest.json and drain.png")
    failed = [r for r in results if r.status == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
