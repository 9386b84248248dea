"""A results file reads back into the figures it was written from."""

from __future__ import annotations

import json

from bench.__main__ import Run, figures, load, to_document
from bench.core.results import jsonable
from bench.core.stats import Latency
from bench.core.targets import evaluate
from bench.drain.harness import RunResult
from bench.drain.report import build_rows
from bench.drain.run import DrainOutcome
from bench.e2e.fanout import FanoutResult
from bench.e2e.ladder import StepResult
from bench.e2e.publisher import PostResult, RelayResult
from bench.footprint.measure import DevStartup, Footprint, ProcessFootprint


def sample_run() -> Run:
    results = [
        RunResult("runtime", "default", "s", "no-op", 100, "ok", rate=900.0),
        RunResult("batched", "1 thread", "s", "no-op", 100, "ok", rate=1000.0),
    ]
    latency = Latency(10, 0.1, 0.2, 0.3, 0.4)
    step = StepResult(10, 100, accepted=100, completed_rate=9.8, settled=True, kept_up=True)
    step.e2e, step.per_service = latency, {"email": latency}
    half = StepResult(4.9, 50, completed_rate=4.9, settled=True, kept_up=True, half_load=True)
    half.e2e = Latency(10, 0.05, 0.1, 0.2, 0.25)
    idle = Footprint("idle", 30, [ProcessFootprint("web_worker", "", 42, 80.0, 60.0, 0.5)])
    return Run(
        drain=DrainOutcome(100, 30, 1, results, build_rows(results, ["no-op", "5ms-io"])),
        steps=[step, half],
        fanout=[FanoutResult(4, 500, 50, 600.0, 590.0, "ok")],
        posts=[PostResult(8, 3.0, 600, 600, 200.0, latency)],
        relay=RelayResult(600, 60.0, "ok", 60),
        idle=idle,
        relay_cost={"poll_interval_s": 0.1, "cpu_ms_per_poll": 0.2, "cpu_percent": 0.2},
        dev=DevStartup("ok", 40.0, 25.0, 10.0, 0),
        load_avg=[3.0, 4.0],
    )


def test_a_results_file_reads_back_to_the_same_figures_and_targets() -> None:
    run = sample_run()
    meta = {"cpus": 2}
    document = json.loads(json.dumps(to_document(run, meta, evaluate(figures(run)))))
    again, meta_again = load(document)
    assert meta_again["cpus"] == 2
    assert figures(again) == figures(run)
    assert figures(run).half_load_p99_ms == 200
    assert again.steps == run.steps
    assert again.idle == run.idle
    assert jsonable(again.posts) == jsonable(run.posts)
    assert again.dev == run.dev
