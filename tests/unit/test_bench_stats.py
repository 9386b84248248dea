"""The benchmark's pure arithmetic: percentiles, the rate ladder, completion rates, how a
step is judged, and the targets."""

from __future__ import annotations

import pytest

from bench.core.stats import (
    Latency,
    batch_rate,
    completion_rate,
    kept_up,
    nice,
    percentile,
    rate_ladder,
    send_offsets,
    step_size,
)
from bench.core.targets import Figures, evaluate
from bench.drain.harness import RunResult
from bench.drain.report import build_rows, drain_figures
from bench.e2e.ladder import OrderTimes, StepResult, summarize_step
from bench.e2e.load import Sent, order_body

SERVICES = ("analytics", "email", "inventory")


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    # numpy.percentile(range(1, 101), 99) == 99.01
    assert percentile([float(v) for v in range(1, 101)], 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("q", [-1, 101])
def test_percentile_refuses_what_is_not_a_percentile(q: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error_and_latency_of_nothing_is_none() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    assert Latency.of([]) is None


def test_latency_summary_orders_its_percentiles() -> None:
    latency = Latency.of([0.01 * i for i in range(1, 201)])
    assert latency is not None
    assert latency.count == 200
    assert latency.p50 < latency.p95 < latency.p99 < latency.max == pytest.approx(2.0)


def test_rates_round_to_two_significant_digits() -> None:
    assert nice(22.5) == 23
    assert nice(1.2345) == 1.2
    assert nice(33750) == 34000
    with pytest.raises(ValueError, match="positive"):
        nice(0)


def test_the_ladder_grows_geometrically_without_repeating_a_rung() -> None:
    assert rate_ladder(10, 1.5, 6) == [10, 15, 23, 34, 51, 76]
    assert rate_ladder(10, 2.5, 4) == [10, 25, 63, 160]
    low = rate_ladder(1, 1.01, 5)
    assert low == sorted(set(low)), "strictly increasing"
    with pytest.raises(ValueError, match="factor"):
        rate_ladder(10, 1, 3)


def test_a_step_lasts_its_duration_within_its_bounds() -> None:
    assert step_size(20, 15, 3000) == 300
    assert step_size(1000, 15, 3000) == 3000
    assert step_size(0.5, 4, 3000) == 10


def test_open_loop_requests_are_due_at_a_constant_rate() -> None:
    assert send_offsets(4, 5) == [0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="positive"):
        send_offsets(0, 3)


def test_completion_rate_counts_intervals_so_a_step_that_kept_up_reads_its_rate() -> None:
    # 11 orders done 0.1 s apart: 10 per second, whatever the step's length.
    assert completion_rate([100 + i / 10 for i in range(11)]) == pytest.approx(10)
    assert completion_rate([5.0]) is None
    assert completion_rate([5.0, 5.0]) is None


def test_kept_up_allows_a_tenth_below_the_offered_rate() -> None:
    assert kept_up(100, 91)
    assert not kept_up(100, 89)
    assert not kept_up(100, None)


def test_batch_rate_starts_the_clock_at_the_first_batch() -> None:
    # Three batches of 10 published 0.1 s apart: 20 events in 0.2 s after the first batch.
    times = [1.0] * 10 + [1.1] * 10 + [1.2] * 10
    assert batch_rate(times) == pytest.approx(100)
    assert batch_rate([1.0] * 10) is None
    assert batch_rate([]) is None


def sent(index: int, latency: float = 0.01, status: int = 201) -> Sent:
    due = index * 0.1
    return Sent(index, due, due, due + latency, status, f"o{index}" if status == 201 else None)


def order(index: int, lag: float, status: str = "processed") -> OrderTimes:
    created = 1000 + index * 0.1
    return OrderTimes(
        f"o{index}",
        created,
        created + 0.02,
        {name: (status, created + lag + n * 0.001) for n, name in enumerate(SERVICES)},
    )


def test_a_step_that_kept_up_reads_its_latencies_from_the_server_timestamps() -> None:
    # Given 20 orders offered at 10/s, each service done 50 ms after its order was created
    step = summarize_step(
        StepResult(10, 20), [sent(i) for i in range(20)], [order(i, 0.05) for i in range(20)], True
    )
    # Then the step kept up, at its rate, with every (order, service) pair counted
    assert step.kept_up
    assert step.completed_rate == pytest.approx(10)
    assert step.e2e is not None
    assert step.e2e.count == 60
    assert step.e2e.p50 == pytest.approx(0.051)
    assert step.order_done is not None
    assert step.order_done.p99 == pytest.approx(0.052)
    assert step.publish_lag is not None
    assert step.publish_lag.p50 == pytest.approx(0.02)
    assert set(step.per_service) == set(SERVICES)
    assert step.statuses == {"processed": 60}


def test_a_step_that_fell_behind_or_lost_orders_did_not_keep_up() -> None:
    # Completions spread over twice the sending time: half the offered rate
    slow = [order(i, 0.05 + i * 0.1) for i in range(20)]
    behind = summarize_step(StepResult(10, 20), [sent(i) for i in range(20)], slow, True)
    assert not behind.kept_up
    assert behind.completed_rate == pytest.approx(5, rel=0.01)
    # An error answer, or an order a service failed, also fails the step
    errors = [sent(i, status=500 if i == 3 else 201) for i in range(20)]
    done = [order(i, 0.05) for i in range(20) if i != 3]
    with_error = summarize_step(StepResult(10, 20), errors, done, True)
    assert (with_error.accepted, with_error.errors, with_error.kept_up) == (19, 1, False)
    failed = [order(i, 0.05, "failed" if i == 0 else "processed") for i in range(20)]
    assert not summarize_step(
        StepResult(10, 20), [sent(i) for i in range(20)], failed, True
    ).kept_up
    # And so does a step that never settled
    fine = [order(i, 0.05) for i in range(20)]
    assert not summarize_step(StepResult(10, 20), [sent(i) for i in range(20)], fine, False).kept_up


def test_latency_counts_from_when_a_request_was_due() -> None:
    late = Sent(0, due=1.0, started=1.5, ended=1.6, status=201, order_id="o0")
    assert late.latency == pytest.approx(0.6)


def test_each_order_body_is_a_valid_order_of_its_own() -> None:
    assert order_body(7, "SKU-1") == (
        b'{"customer_email": "load7@example.com", "items": [{"sku": "SKU-1", "quantity": 1}]}'
    )


def drain_result(contender: str, setting: str, handler: str, rate: float) -> RunResult:
    return RunResult(contender, setting, "s", handler, 100, "ok", rate=rate)


def test_targets_are_ratios_within_one_run() -> None:
    # Given a drain where the runtime is fast, and every other part measured
    rows = build_rows(
        [
            drain_result("runtime", "default", "no-op", 950),
            drain_result("runtime", "default", "5ms-io", 900),
            drain_result("batched", "1 thread", "no-op", 1000),
            drain_result("batched", "4 threads", "no-op", 800),
            drain_result("naive", "1 thread", "no-op", 100),
            drain_result("celery", "tuned", "no-op", 300),
            drain_result("sqs-workers", "tuned", "no-op", 700),
            drain_result("sqs-workers", "tuned", "5ms-io", 300),
        ],
        ["no-op", "5ms-io"],
    )
    values = drain_figures(rows)
    assert values["raw_noop"] == 1000
    assert values["libraries_noop"] == 700
    figures = Figures(
        **values,
        e2e_sustained=50,
        fanout_ceiling=100,
        half_load_p99_ms=240,
        idle_cpu_percent=1.0,
        idle_rss_mb=320,
    )
    verdicts = {t.name: t for t in evaluate(figures)}
    # Then each is computed and judged against its bound
    assert verdicts["runtime no-op vs fastest raw batched loop"].value == pytest.approx(0.95)
    assert verdicts["runtime no-op vs fastest raw batched loop"].met
    assert verdicts["runtime no-op vs naive loop"].value == pytest.approx(9.5)
    assert verdicts["runtime no-op vs fastest of Celery/dramatiq/sqs-workers"].met
    assert not verdicts["runtime 5 ms handler vs fastest of Celery/dramatiq/sqs-workers"].met
    assert not verdicts["end to end sustained orders/s vs raw SNS fan-out ceiling"].met
    assert verdicts["e2e p99 at half the sustained load"].met
    assert verdicts["idle CPU of the programs together"].met
    assert not verdicts["resident memory of the programs together"].met


def test_a_target_whose_part_did_not_run_is_not_measured() -> None:
    verdicts = evaluate(Figures())
    assert {t.met for t in verdicts} == {None}
