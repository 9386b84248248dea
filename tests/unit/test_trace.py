"""`pubsub trace` and `pubsub logs` on sample log files (JSON lines, one file per program)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pubsub_ops import cli, trace

ORDER = "o1"
TRACE = "t1"


def write_log(directory: Path, program: str, *lines: dict[str, object] | str) -> None:
    with (directory / f"{program}.log").open("a") as log:
        for line in lines:
            text = line if isinstance(line, str) else json.dumps({"program": program, **line})
            log.write(text + "\n")


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """One order's lines in every program's log, among another order's and a traceback."""
    write_log(
        tmp_path,
        "web",
        {
            "time": "2026-12-01T10:00:00.000+00:00",
            "message": "order accepted",
            "order_id": ORDER,
            "trace_id": TRACE,
        },
        {
            "time": "2026-12-01T10:00:00.004+00:00",
            "message": "request",
            "trace_id": TRACE,
            "method": "POST",
            "path": "/api/orders",
            "status": 201,
        },
        {
            "time": "2026-12-01T10:00:00.500+00:00",
            "message": "order accepted",
            "order_id": "o2",
            "trace_id": "t2",
        },
    )
    write_log(
        tmp_path,
        "web_worker",
        {
            "time": "2026-12-01T10:00:00.100+00:00",
            "message": "event published",
            "order_id": ORDER,
            "trace_id": TRACE,
        },
        {
            "time": "2026-12-01T10:00:00.300+00:00",
            "message": "order status updated",
            "order_id": ORDER,
            "trace_id": TRACE,
            "service": "email",
            "status": "processed",
        },
    )
    write_log(
        tmp_path,
        "email_service",
        "Traceback (most recent call last):",
        {
            "time": "2026-12-01T10:00:00.250+00:00",
            "message": "order handled",
            "order_id": ORDER,
            "trace_id": TRACE,
            "status": "processed",
        },
    )
    (tmp_path / "supervisord.log").write_text("2026-12-01 10:00:00,000 INFO spawned\n")
    return tmp_path


def test_the_trace_is_every_line_of_the_order_in_time_order(logs: Path) -> None:
    found = trace.matching(trace.records(trace.log_files(logs)), ORDER)

    assert [(r["program"], r["message"]) for r in found] == [
        ("web", "order accepted"),
        ("web", "request"),  # the POST carries only the trace id
        ("web_worker", "event published"),
        ("email_service", "order handled"),
        ("web_worker", "order status updated"),
    ]
    assert [round(line.offset, 3) for line in trace.lines(found)] == [0, 0.004, 0.1, 0.25, 0.3]


def test_a_trace_id_finds_the_same_lines(logs: Path) -> None:
    by_trace = trace.matching(trace.records(trace.log_files(logs)), TRACE)
    by_order = trace.matching(trace.records(trace.log_files(logs)), ORDER)
    assert by_trace == by_order


def test_pubsub_trace_prints_programs_timings_and_details(
    logs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["trace", ORDER, "--log-dir", str(logs)])
    out = capsys.readouterr().out

    assert code == cli.EXIT_OK
    assert out.splitlines()[0].startswith(f"{ORDER}: 5 log lines from 3 programs")
    assert "   +0.250s  email_service     order handled  status=processed" in out
    assert "order status updated  service=email status=processed" in out
    assert "o2" not in out


def test_nothing_found_says_where_it_looked(
    logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["trace", "nope", "--log-dir", str(logs)]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "no log line names order or trace nope" in err
    assert str(logs) in err

    monkeypatch.setenv("PUBSUB_LOG_DIR", str(tmp_path / "empty"))
    assert cli.main(["trace", ORDER]) == cli.EXIT_FAILED
    assert f"no program logs in {tmp_path / 'empty'}" in capsys.readouterr().err


def test_logs_prints_the_end_of_every_log_with_its_program(logs: Path) -> None:
    out = io.StringIO()

    trace.follow(logs, out, backlog=1, keep_going=lambda: False)

    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("email_service    | {")
    assert lines[1] == "supervisord      | 2026-12-01 10:00:00,000 INFO spawned"


def test_logs_follow_prints_new_whole_lines_and_rotated_files(logs: Path) -> None:
    out = io.StringIO()
    passes = iter([True, True, False])

    def keep_going() -> bool:
        going = next(passes)
        if going and not (logs / "inventory_service.log").exists():
            write_log(logs, "web", "new line")
            (logs / "email_service.log").write_text("after rotation\n")
            (logs / "inventory_service.log").write_text("partial")
        return going

    trace.follow(logs, out, backlog=0, keep_going=keep_going, interval=0)

    text = out.getvalue()
    assert "web              | new line\n" in text
    assert "email_service    | after rotation\n" in text
    assert "partial" not in text


def test_logs_without_a_log_dir_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["logs", "--log-dir", str(tmp_path / "none")]) == cli.EXIT_FAILED
    assert "start the stack with `make dev` first" in capsys.readouterr().err
