"""Run one contender on one freshly filled queue and measure how fast it drains it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.core import payload
from bench.core.cpu import tree_cpu_s
from bench.core.queues import queue_depth
from bench.drain.contenders.common import WorkerEnv, sqs_client
from bench.drain.contenders.specs import Spec
from bench.drain.tally import TallyReader, TallySummary

if TYPE_CHECKING:
    pass

#: Seconds between looks at the tally file.
POLL_S = 0.05
#: Seconds between progress lines.
PROGRESS_S = 2.0
#: Seconds a worker gets to exit on SIGTERM before its process group is killed.
STOP_GRACE_S = 5.0
#: Longer than any drain, so no message is redelivered while a worker holds it.
VISIBILITY_TIMEOUT_S = 300
#: Deliveries before a message is dead-lettered; no handler here fails, so none is.
MAX_RECEIVE_COUNT = 5

Say = Callable[[str], None]


@dataclass(frozen=True)
class Workload:
    """What every contender gets: the same count of the same messages and the same work."""

    handler: str
    work_ms: float
    messages: int
    timeout_s: float


@dataclass
class RunResult:
    """How one contender drained one queue."""

    contender: str
    setting: str
    summary: str
    handler: str
    messages: int
    #: ok | timeout | failed
    status: str
    detail: str = ""
    handled: int = 0
    unique: int = 0
    acked: int = 0
    #: Delete calls, and ReceiveMessage calls through botocore (kombu receives through
    #: pycurl, so Celery's are not seen), up to the moment the drain was complete.
    ack_calls: int = 0
    receive_calls: int | None = None
    left_in_queue: int | None = None
    elapsed_s: float | None = None
    rate: float | None = None
    worker_cpu_s: float | None = None
    emulator_cpu_s: float | None = None
    #: The machine's 1-minute load average as the worker started: the machine may be shared.
    load_avg: float | None = None


class Children:
    """Worker process groups still alive, so an interrupted run can end them all."""

    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start `argv` in a new session (its own process group) logging to `log`."""
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._procs[proc.pid] = proc
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process group, then SIGKILL it after a grace period."""
        self._procs.pop(proc.pid, None)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                continue
            # Prefork children may outlive their parent for a moment; end the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return

    def stop_all(self) -> None:
        """Stop every worker still running."""
        for proc in list(self._procs.values()):
            self.stop(proc)


class Harness:
    """Runs specs against one emulator, one fresh queue per run."""

    def __init__(
        self,
        endpoint_url: str,
        workdir: Path,
        *,
        logdir: Path,
        emulator_pid: int | None,
        say: Say,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.workdir = workdir
        self.logdir = logdir
        self.emulator_pid = emulator_pid
        self.say = say
        self.sqs = sqs_client(endpoint_url)
        self.children = Children()

    def run(self, spec: Spec, load: Workload) -> RunResult:
        """Fill a fresh queue, start the worker, wait for the drain, check, clean up."""
        result = RunResult(
            spec.contender, spec.setting, spec.summary, load.handler, load.messages, "failed"
        )
        name = f"bench_{spec.contender}_{spec.setting}_{load.handler}_{uuid.uuid4().hex[:8]}"
        name = "".join(c if c.isalnum() else "_" for c in name)
        rundir = self.workdir / name
        rundir.mkdir(parents=True)
        urls: list[str] = []
        try:
            urls.extend(self._create_queue(name))
            env = WorkerEnv(
                self.endpoint_url, urls[0], name, rundir / "tally", load.work_ms, spec.options
            )
            self._prefill(spec, env, load.messages)
            self._drain(spec, env, load, rundir, result)
        except Exception as exc:  # one broken contender must not end the whole benchmark
            result.status, result.detail = "failed", f"{type(exc).__name__}: {exc}"
            self.say(f"  failed: {result.detail}")
        finally:
            for url in urls:
                with contextlib.suppress(Exception):
                    self.sqs.delete_queue(QueueUrl=url)
        if result.status != "ok" and (rundir / "worker.log").exists():
            # The work dir goes away with the run; keep what the worker said.
            self.logdir.mkdir(parents=True, exist_ok=True)
            kept = shutil.copy(rundir / "worker.log", self.logdir / f"{name}.log")
            self.say(f"  worker log kept in {kept}")
        return result

    def _create_queue(self, name: str) -> tuple[str, str]:
        """A queue with a dead-letter queue, as the project's topology makes them."""
        dlq_url = self.sqs.create_queue(QueueName=f"{name}_dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_url = self.sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
                ),
            },
        )["QueueUrl"]
        return queue_url, dlq_url

    def _prefill(self, spec: Spec, env: WorkerEnv, messages: int) -> None:
        started = time.monotonic()
        spec.prefill(env, [payload.order_created(seq) for seq in range(messages)])
        depth = queue_depth(self.sqs, env.queue_url)
        if depth != messages:
            raise RuntimeError(f"pre-fill left {depth} messages in the queue, not {messages}")
        self.say(f"  pre-filled {messages} messages in {time.monotonic() - started:.1f} s")

    def _drain(
        self, spec: Spec, env: WorkerEnv, load: Workload, rundir: Path, result: RunResult
    ) -> None:
        reader = TallyReader(env.tally_path)
        proc = self.children.start(
            spec.command(env), {**os.environ, **env.to_environ()}, rundir / "worker.log"
        )
        started = time.monotonic()
        result.load_avg = os.getloadavg()[0]
        cpu_at_first: tuple[float | None, float | None] | None = None
        next_progress = started + PROGRESS_S
        summary = TallySummary()
        try:
            while True:
                summary = reader.poll()
                if cpu_at_first is None and summary.handled:
                    cpu_at_first = (tree_cpu_s(proc.pid), self._emulator_cpu())
                if len(summary.keys) >= load.messages and summary.acked >= load.messages:
                    result.status = "ok"
                    result.ack_calls = summary.ack_calls
                    result.receive_calls = summary.receive_calls or None
                    break
                now = time.monotonic()
                if proc.poll() is not None:
                    result.detail = f"worker exited with {proc.returncode}"
                    break
                if now - started > load.timeout_s:
                    result.status = "timeout"
                    result.detail = f"not drained after {load.timeout_s:.0f} s"
                    break
                if now >= next_progress:
                    self.say(
                        f"  {len(summary.keys)}/{load.messages} handled, "
                        f"{summary.acked} acked, {now - started:.1f} s"
                    )
                    next_progress = now + PROGRESS_S
                time.sleep(POLL_S)
            if cpu_at_first is not None:
                worker_cpu, emulator_cpu = tree_cpu_s(proc.pid), self._emulator_cpu()
                if worker_cpu is not None and cpu_at_first[0] is not None:
                    result.worker_cpu_s = worker_cpu - cpu_at_first[0]
                if emulator_cpu is not None and cpu_at_first[1] is not None:
                    result.emulator_cpu_s = emulator_cpu - cpu_at_first[1]
        finally:
            self.children.stop(proc)
        summary = reader.poll()
        result.handled, result.unique, result.acked = (
            summary.handled,
            len(summary.keys),
            summary.acked,
        )
        finished = summary.finished_at
        if (
            summary.first_start is not None
            and finished is not None
            and finished > summary.first_start
        ):
            result.elapsed_s = finished - summary.first_start
            result.rate = len(summary.keys) / result.elapsed_s
        result.left_in_queue = queue_depth(self.sqs, env.queue_url)
        if result.status == "ok" and result.left_in_queue:
            result.status = "failed"
            result.detail = f"{result.left_in_queue} messages left in the queue after the drain"
        self._report(result)

    def _emulator_cpu(self) -> float | None:
        return tree_cpu_s(self.emulator_pid) if self.emulator_pid else None

    def _report(self, result: RunResult) -> None:
        rate = f"{result.rate:,.0f} msg/s" if result.rate else "no rate"
        elapsed = f"{result.elapsed_s:.2f} s" if result.elapsed_s else "-"
        line = f"  {result.status}: {result.unique}/{result.messages} in {elapsed} = {rate}"
        if result.handled > result.unique:
            line += f" ({result.handled - result.unique} redelivered)"
        if result.status == "ok":
            calls = [f"{result.ack_calls} delete calls"]
            if result.receive_calls:
                calls.insert(0, f"{result.receive_calls} receive calls")
            line += f" ({', '.join(calls)})"
        if result.detail:
            line += f" - {result.detail}"
        self.say(line)
