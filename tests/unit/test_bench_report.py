"""The benchmark's pure parts: ratios, the table, the tally file and contender selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.drain.contenders.specs import select
from bench.drain.harness import RunResult
from bench.drain.report import build_rows, format_cost_table, format_table
from bench.drain.tally import Tally, TallyReader

HANDLERS = ["no-op", "5ms-io"]


def result(
    contender: str, setting: str, handler: str, rate: float | None, status: str = "ok"
) -> RunResult:
    return RunResult(contender, setting, "s", handler, 100, status, rate=rate)


def test_ratios_are_against_runtime_default_and_the_fastest_batched_loop() -> None:
    # Given runtime, two batched loops and a contender, for one handler
    results = [
        result("runtime", "default", "no-op", 1000.0),
        result("batched", "1 thread", "no-op", 2000.0),
        result("batched", "4 threads", "no-op", 2500.0),
        result("celery", "tuned", "no-op", 250.0),
    ]
    # When rows are built
    rows = {(r.contender, r.setting): r for r in build_rows(results, ["no-op"])}
    # Then each rate is divided by the runtime's and by the fastest batched rate
    celery = rows["celery", "tuned"].cells["no-op"]
    assert celery.vs_reference == pytest.approx(0.25)
    assert celery.vs_raw == pytest.approx(0.1)
    assert rows["batched", "4 threads"].cells["no-op"].vs_raw == pytest.approx(1.0)
    assert rows["runtime", "default"].cells["no-op"].vs_reference == pytest.approx(1.0)


def test_repeats_report_the_median_and_ratios_are_per_handler() -> None:
    results = [
        result("runtime", "default", "no-op", 100.0),
        result("runtime", "default", "no-op", 300.0),
        result("runtime", "default", "no-op", 200.0),
        result("runtime", "default", "5ms-io", 50.0),
        result("naive", "1 thread", "5ms-io", 25.0),
    ]
    rows = {(r.contender, r.setting): r for r in build_rows(results, HANDLERS)}
    runtime = rows["runtime", "default"].cells
    assert runtime["no-op"].rate == 200.0
    assert runtime["no-op"].runs == 3
    assert (runtime["no-op"].rate_min, runtime["no-op"].rate_max) == (100.0, 300.0)
    assert rows["naive", "1 thread"].cells["5ms-io"].vs_reference == pytest.approx(0.5)
    assert "no-op" not in rows["naive", "1 thread"].cells


def test_a_timed_out_reference_gives_no_ratio_and_is_flagged_in_the_table() -> None:
    # Given a reference that timed out after draining part of its queue
    results = [
        result("runtime", "default", "no-op", 8.0, status="timeout"),
        result("celery", "tuned", "no-op", 250.0),
    ]
    rows = build_rows(results, ["no-op"])
    table = format_table(rows, ["no-op"])
    # Then its partial rate is shown with a star, and nothing is compared with it
    assert rows[0].cells["no-op"].rate == 8.0
    assert rows[1].cells["no-op"].vs_reference is None
    runtime_line = next(line for line in table.splitlines() if line.startswith("runtime"))
    assert "8*" in runtime_line
    assert "did not finish" in table


def test_table_lines_up_rates_and_ratios() -> None:
    results = [
        result("runtime", "default", "no-op", 1234.0),
        result("batched", "1 thread", "no-op", 2468.0),
        result("dramatiq", "default", "no-op", None, status="failed"),
    ]
    table = format_table(build_rows(results, ["no-op"]), ["no-op"]).splitlines()
    header, rule, runtime, batched, dramatiq = table[:5]
    assert header.split()[:3] == ["contender", "setting", "no-op"]
    # contender, setting, rate, two ratios, what the setting is
    assert len(rule.split()) == 6
    assert runtime.split()[2:5] == ["1,234", "1.00x", "0.50x"]
    assert "2.00x" in batched
    assert "failed" in dramatiq
    # right-aligned numbers end in the same column
    assert runtime.index("1,234") == batched.index("2,468")


def test_small_ratios_keep_two_significant_digits() -> None:
    results = [
        result("runtime", "default", "no-op", 3000.0),
        result("celery", "default", "no-op", 8.0, status="timeout"),
    ]
    table = format_table(build_rows(results, ["no-op"]), ["no-op"])
    assert "0.0027x" in table


def test_tally_reader_folds_lines_from_several_writers(tmp_path: Path) -> None:
    path = tmp_path / "tally"
    first, second = Tally(path), Tally(path)
    first.handled("a", 10.0, 10.5)
    second.handled("b", 9.0, 11.0)
    first.handled("a", 12.0, 12.1)  # a redelivery
    second.acked(2, 13.0)
    second.acked(0, 99.0)  # nothing deleted: not written
    first.received(10)
    first.received(0)
    reader = TallyReader(path)
    summary = reader.poll()
    assert (summary.handled, len(summary.keys), summary.acked) == (3, 2, 2)
    assert (summary.ack_calls, summary.receive_calls) == (1, 2)
    assert summary.first_start == 9.0
    assert summary.finished_at == 13.0
    # A later poll only adds what was written since
    first.acked(1, 14.0)
    assert reader.poll().acked == 3


def test_tally_reader_waits_for_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "tally"
    path.write_bytes(b"H a 1.0 2.0\nH b 1.")
    reader = TallyReader(path)
    assert reader.poll().handled == 1
    with path.open("ab") as fh:
        fh.write(b"5 3.0\n")
    assert reader.poll().handled == 2
    assert reader.summary.last_end == 3.0


def test_select_by_contender_name() -> None:
    assert {s.contender for s in select(["celery", "naive"])} == {"celery", "naive"}
    assert len(select([])) == len(select(None))
    with pytest.raises(ValueError, match="unknown contender"):
        select(["rabbit"])


def test_cost_table_is_per_thousand_messages_and_skips_unfinished_rows() -> None:
    drained = RunResult(
        "batched",
        "1 thread",
        "s",
        "no-op",
        2000,
        "ok",
        rate=1000.0,
        worker_cpu_s=0.5,
        emulator_cpu_s=0.8,
        ack_calls=200,
        receive_calls=210,
    )
    stalled = result("celery", "default", "no-op", 8.0, status="timeout")
    table = format_cost_table(build_rows([drained, stalled], ["no-op"]), "no-op")
    batched = next(line for line in table.splitlines() if line.startswith("batched"))
    assert batched.split()[-4:] == ["250", "400", "105", "100"]
    assert "celery" not in table
