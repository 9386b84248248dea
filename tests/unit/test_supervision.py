"""The supervisord event listeners, fed events through in-memory streams."""

from __future__ import annotations

import io

import pytest

from pubsub_supervisor.supervision import fatal_listener, log_forwarder
from pubsub_supervisor.supervision.protocol import parse_header, serve


def event(name: str, payload: str) -> str:
    """One event as supervisord writes it to a listener's stdin."""
    header = (
        f"ver:3.0 server:supervisor serial:21 pool:listener poolserial:10 "
        f"eventname:{name} len:{len(payload)}\n"
    )
    return header + payload


def fatal_payload(program: str) -> str:
    return f"processname:{program} groupname:{program} from_state:BACKOFF"


def log_payload(program: str, data: str) -> str:
    return f"processname:{program} groupname:{program} pid:42 channel:stdout\n{data}"


class Terminations:
    """Counts calls of the terminate action."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_fatal_event_names_the_program_and_terminates() -> None:
    # Given a FATAL event for inventory_service
    err, terminate = io.StringIO(), Terminations()
    header = parse_header(event("PROCESS_STATE_FATAL", "").splitlines()[0])
    # When the listener handles it
    fatal_listener.handle_event(header, fatal_payload("inventory_service"), err, terminate)
    # Then supervisord is told to stop, once, and the log says which program failed
    assert terminate.calls == 1
    assert "program inventory_service is FATAL" in err.getvalue()


def test_under_make_dev_reload_a_fatal_program_is_only_reported() -> None:
    err, terminate = io.StringIO(), Terminations()
    header = parse_header(event("PROCESS_STATE_FATAL", "").splitlines()[0])

    fatal_listener.handle_event(
        header, fatal_payload("inventory_service"), err, terminate, reloading=True
    )

    assert terminate.calls == 0
    assert "program inventory_service is FATAL" in err.getvalue()
    assert "saving a fix starts it again" in err.getvalue()


def test_other_events_do_not_terminate() -> None:
    err, terminate = io.StringIO(), Terminations()
    header = {"eventname": "PROCESS_STATE_RUNNING", "len": "0"}
    fatal_listener.handle_event(header, fatal_payload("web"), err, terminate)
    assert terminate.calls == 0
    assert err.getvalue() == ""


def test_fatal_listener_sanitises_the_program_name() -> None:
    err, terminate = io.StringIO(), Terminations()
    header = {"eventname": "PROCESS_STATE_FATAL", "len": "0"}
    fatal_listener.handle_event(header, "processname:a\x1b[2Jb$(x) groupname:g", err, terminate)
    assert "program a??2Jb??x? is FATAL" in err.getvalue()
    assert "\x1b" not in err.getvalue()


def test_log_lines_are_marked_with_the_program() -> None:
    out = io.StringIO()
    header = {"eventname": "PROCESS_LOG_STDOUT", "len": "0"}
    log_forwarder.handle_event(header, log_payload("email_service", "one\ntwo\n"), out)
    lines = out.getvalue().splitlines()
    assert lines == [
        f"{'email_service':<{log_forwarder.WIDTH}}| one",
        f"{'email_service':<{log_forwarder.WIDTH}}| two",
    ]


def test_forwarder_ignores_state_events() -> None:
    out = io.StringIO()
    log_forwarder.handle_event({"eventname": "PROCESS_STATE_FATAL", "len": "0"}, "x:y", out)
    assert out.getvalue() == ""


def test_serve_speaks_the_listener_protocol() -> None:
    # Given two events on stdin, then its end
    stdin = io.StringIO(
        event("PROCESS_LOG_STDOUT", log_payload("web", "hello"))
        + event("PROCESS_STATE_FATAL", fatal_payload("web_worker"))
    )
    stdout, err, terminate = io.StringIO(), io.StringIO(), Terminations()
    seen: list[str] = []

    def handle(header: dict[str, str], payload: str) -> None:
        seen.append(header["eventname"])
        fatal_listener.handle_event(header, payload, err, terminate)

    # When the listener serves until stdin ends
    serve(stdin, stdout, handle)
    # Then it said READY before each event, acknowledged each, and handled both in order
    assert seen == ["PROCESS_LOG_STDOUT", "PROCESS_STATE_FATAL"]
    assert stdout.getvalue() == "READY\nRESULT 2\nOKREADY\nRESULT 2\nOKREADY\n"
    assert terminate.calls == 1


def test_a_malformed_header_is_an_error_that_says_so() -> None:
    with pytest.raises(RuntimeError, match="lacks eventname or len"):
        parse_header("ver:3.0 server:supervisor\n")
    with pytest.raises(RuntimeError, match="malformed event header"):
        parse_header("garbage\n")
