"""What the stack costs while it waits and while it works: resident memory and CPU of each
program in the supervisord tree, the outbox relay's share of idle CPU, and the time from
`make dev` to a ready web."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.e2e.stack import BenchStack
from devtools.emulator import free_port
from pubsub_supervisor.db import make_engine
from tests.support.stack import PROGRAMS, wait_for
from web.outbox import OutboxRelay

Say = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024
#: Empty relay passes timed to find the CPU one poll of the outbox costs.
RELAY_PASSES = 300
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class ProcessFootprint:
    """One process of the tree over one window."""

    program: str
    role: str
    pid: int
    rss_mb: float
    #: Proportional set size: shared pages divided among their sharers, so these add up.
    pss_mb: float | None
    #: CPU used over the window, in percent of one core.
    cpu_percent: float | None = None


@dataclass
class Footprint:
    """The whole tree over one window (idle, or under load)."""

    phase: str
    seconds: float
    processes: list[ProcessFootprint] = field(default_factory=list)

    def _total(self, attr: str, programs_only: bool) -> float | None:
        values = [
            getattr(p, attr) for p in self.processes if not programs_only or p.program in PROGRAMS
        ]
        if any(v is None for v in values):
            return None
        return float(sum(values))

    def totals(self) -> dict[str, float | None]:
        """RSS, PSS and CPU of the five programs together, and of the whole tree."""
        return {
            f"{scope}_{attr}": self._total(attr, scope == "programs")
            for scope in ("programs", "tree")
            for attr in ("rss_mb", "pss_mb", "cpu_percent")
        }

    def by_program(self) -> dict[str, dict[str, float | None]]:
        """Each program's processes added up (the web: its master and its workers)."""
        grouped: dict[str, dict[str, float | None]] = {}
        for p in self.processes:
            row = grouped.setdefault(
                p.program, {"processes": 0, "rss_mb": 0.0, "pss_mb": 0.0, "cpu_percent": 0.0}
            )
            row["processes"] = (row["processes"] or 0) + 1
            for attr in ("rss_mb", "pss_mb", "cpu_percent"):
                value = getattr(p, attr)
                current = row[attr]
                row[attr] = None if value is None or current is None else current + value
        return grouped


def tree(stack: BenchStack) -> list[tuple[str, str, psutil.Process]]:
    """(program, role, process) for supervisord and every process it runs."""
    supervised = stack.supervised
    if supervised.proc is None:
        raise RuntimeError("the stack is not running")
    found: list[tuple[str, str, psutil.Process]] = [
        ("supervisord", "", psutil.Process(supervised.proc.pid))
    ]
    for program, (state, pid) in supervised.status().items():
        if state != "RUNNING" or pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            found.append((program, "master" if program == "web" else "", root))
            for child in root.children(recursive=True):
                found.append((program, "worker" if program == "web" else "child", child))
    return found


def _memory(proc: psutil.Process) -> tuple[float, float | None]:
    try:
        full = proc.memory_full_info()
        return full.rss / MB, getattr(full, "pss", None) and full.pss / MB
    except psutil.AccessDenied:
        return proc.memory_info().rss / MB, None


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def idle(stack: BenchStack, seconds: float) -> Footprint:
    """The tree doing nothing for `seconds`."""
    with sampled(stack, "idle") as out:
        time.sleep(seconds)
    return out[0]


@contextlib.contextmanager
def sampled(stack: BenchStack, phase: str) -> Iterator[list[Footprint]]:
    """CPU of each process while the block runs, and its largest RSS/PSS sampled every
    second; the Footprint is appended to the yielded list when the block ends."""
    out: list[Footprint] = []
    stop = threading.Event()
    procs = tree(stack)
    cpu_start = {}
    for _, _, proc in procs:
        with contextlib.suppress(psutil.Error):
            cpu_start[proc.pid] = _cpu_seconds(proc)
    peak: dict[int, tuple[float, float | None]] = {}

    def sample() -> None:
        while True:
            for _, _, proc in procs:
                with contextlib.suppress(psutil.Error):
                    rss, pss = _memory(proc)
                    if proc.pid not in peak or rss > peak[proc.pid][0]:
                        peak[proc.pid] = (rss, pss)
            if stop.wait(1.0):
                return

    started = time.monotonic()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield out
    finally:
        stop.set()
        sampler.join()
        elapsed = time.monotonic() - started
        footprint = Footprint(phase, round(elapsed, 2))
        for program, role, proc in procs:
            cpu: float | None = None
            with contextlib.suppress(psutil.Error):
                cpu = (_cpu_seconds(proc) - cpu_start[proc.pid]) / elapsed * 100
            if proc.pid in peak:
                rss, pss = peak[proc.pid]
                footprint.processes.append(ProcessFootprint(program, role, proc.pid, rss, pss, cpu))
        out.append(footprint)


class _NoSns:
    """Stands in for SNS where nothing may be published."""

    def publish_batch(self, **_kwargs: Any) -> Any:
        raise AssertionError("the outbox was expected to be empty")


def relay_poll_cost(stack: BenchStack) -> dict[str, float]:
    """CPU one empty poll of the outbox costs, on a copy of the web's store as it is now,
    and what that makes at the configured OUTBOX_POLL_INTERVAL."""
    source = stack.settings.data_dir / "web.sqlite3"
    copy = source.with_name("relay-probe.sqlite3")
    # sqlite3's `with` commits but does not close; closing() does.
    with (
        contextlib.closing(sqlite3.connect(source)) as live,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        live.backup(target)
    engine = make_engine(f"sqlite:///{copy}")
    try:
        relay = OutboxRelay(engine, _NoSns(), {})  # type: ignore[arg-type]
        relay.relay_once()  # connections and statements warm
        started = time.thread_time()
        for _ in range(RELAY_PASSES):
            relay.relay_once()
        per_poll = (time.thread_time() - started) / RELAY_PASSES
    finally:
        engine.dispose()
        copy.unlink(missing_ok=True)
    interval = stack.settings.outbox_poll_interval
    return {
        "poll_interval_s": interval,
        "cpu_ms_per_poll": per_poll * 1000,
        "cpu_percent": per_poll / interval * 100,
    }


@dataclass
class DevStartup:
    """`python -m devtools.dev` from its start to /readyz answering 200."""

    status: str
    ready_s: float | None = None
    #: The part of it LocalStack took, as dev.py logs it.
    emulator_s: float | None = None
    #: From SIGINT to dev.py's exit (programs drained, emulator stopped).
    stop_s: float | None = None
    exit_code: int | None = None
    detail: str = ""


def dev_startup(state_dir: Path, timeout: float, say: Say) -> DevStartup:
    """Start `make dev`'s program on free ports with its own state; time it until ready."""
    emulator_port, web_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PUBSUB_"))}
    env |= {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{emulator_port}",
        "WEB_PORT": str(web_port),
        "PUBSUB_RUN_DIR": str(state_dir / "run"),
        "PUBSUB_LOG_DIR": str(state_dir / "log"),
        "DATA_DIR": str(state_dir / "data"),
        # No developer .env: the defaults, as in CI.
        "ENV_FILE": "",
    }
    output = state_dir / "dev.log"
    state_dir.mkdir(parents=True, exist_ok=True)
    say(f"  starting python -m devtools.dev (emulator :{emulator_port}, web :{web_port})")
    started = time.monotonic()
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.dev", "--state-dir", str(state_dir / "ls")],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    result = DevStartup("failed")
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"dev exited with {proc.returncode}")
            try:
                with _DIRECT.open(f"http://127.0.0.1:{web_port}/readyz", timeout=2) as response:
                    return bool(response.status == 200)
            except (OSError, urllib.error.URLError):
                return False

        try:
            wait_for(ready, timeout, "/readyz", interval=0.1)
            result.ready_s = time.monotonic() - started
            result.status = "ok"
        except (AssertionError, RuntimeError) as exc:
            result.detail = str(exc)
    finally:
        stopping = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            result.exit_code = proc.wait(timeout=180)
            result.stop_s = time.monotonic() - stopping
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            result.detail += " (killed: did not stop within 180 s)"
    match = re.search(r"LocalStack ready on \S+ in ([\d.]+) s", output.read_text(errors="replace"))
    if match:
        result.emulator_s = float(match.group(1))
    say("  " + describe_dev(result))
    return result


def describe_dev(result: DevStartup) -> str:
    """One progress line."""
    if result.status != "ok" or result.ready_s is None:
        return f"make dev: {result.status} {result.detail}"
    emulator = f" (LocalStack {result.emulator_s:.1f} s)" if result.emulator_s else ""
    stop = f", stopped in {result.stop_s:.1f} s" if result.stop_s is not None else ""
    return f"make dev: /readyz 200 after {result.ready_s:.1f} s{emulator}{stop}"
