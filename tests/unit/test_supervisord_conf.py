"""Invariants of supervisord.conf, the one configuration of the container and `make dev`."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import yaml

from pubsub_supervisor import program, registry
from pubsub_supervisor.runtime import ConsumerConfig

ROOT = Path(__file__).resolve().parents[2]

#: Seconds docker needs beyond supervisord's own stop (tini, the exit, the log flush).
STOP_MARGIN = 5


def load_conf() -> configparser.RawConfigParser:
    # Raw: the %(ENV_...)s references are supervisord's to expand, not configparser's.
    parser = configparser.RawConfigParser(inline_comment_prefixes=(" ;",))
    parser.read(ROOT / "supervisord.conf")
    return parser


CONF = load_conf()
PROGRAMS = [s.removeprefix("program:") for s in CONF.sections() if s.startswith("program:")]
LISTENERS = [s for s in CONF.sections() if s.startswith("eventlistener:")]


def compose_app() -> dict[str, object]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app: dict[str, object] = compose["services"]["app"]
    return app


def seconds(duration: str) -> int:
    """Compose durations as used here: `90s`, `1m30s`."""
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert duration, "empty duration"
    assert match, f"unsupported duration {duration!r}"
    return int(match[1] or 0) * 60 + int(match[2] or 0)


#: The programs that are not order services.
WEB_PROGRAMS = ("web", "web_worker")


def test_the_programs_are_the_web_its_worker_and_one_per_registered_service() -> None:
    assert sorted(PROGRAMS) == sorted([*WEB_PROGRAMS, *(s.program for s in registry.SERVICES)])


def test_every_registered_service_has_a_program_block() -> None:
    missing = [s.program for s in registry.SERVICES if s.program not in PROGRAMS]
    assert not missing, (
        f"supervisord.conf has no [program:{missing[0]}] block for a service in "
        "pubsub_supervisor/registry.py: copy another service's block (README.md, "
        '"Add your own service")'
    )


def test_every_service_program_is_a_registered_service() -> None:
    unknown = [p for p in PROGRAMS if p.endswith("_service")]
    unknown = [p for p in unknown if p.removesuffix("_service") not in registry.names()]
    assert not unknown, (
        f"supervisord.conf runs {unknown[0]}, which pubsub_supervisor/registry.py does not "
        "declare: add a ServiceSpec for it there, or remove the block"
    )


@pytest.mark.parametrize("spec", registry.SERVICES, ids=lambda s: s.name)
def test_every_service_program_runs_its_registry_entry(spec: registry.ServiceSpec) -> None:
    command = CONF[f"program:{spec.program}"]["command"]
    assert command == "%(ENV_PUBSUB_VENV)s/bin/python " + " ".join(spec.command)


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_restarts_and_stops_as_a_group(program: str) -> None:
    section = CONF[f"program:{program}"]
    assert section["autorestart"] == "true"
    assert int(section["startretries"]) >= 3
    # A bad setting must fail within startsecs to count as a failed start (see the header).
    assert int(section["startsecs"]) >= 5
    assert section["stopsignal"] == "TERM"
    assert section["stopasgroup"] == "true"
    assert section["killasgroup"] == "true"
    assert int(section["stopwaitsecs"]) > 0


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_logs_both_ways(program: str) -> None:
    section = CONF[f"program:{program}"]
    # Its own file for `supervisorctl tail`, and events for the log_forwarder (the console).
    assert section["stdout_logfile"].endswith("/%(program_name)s.log")
    assert section["redirect_stderr"] == "true"
    assert section["stdout_events_enabled"] == "true"
    assert "PROGRAM_NAME=" in section["environment"]


def test_listeners_forward_logs_and_stop_on_fatal() -> None:
    forwarder = CONF["eventlistener:log_forwarder"]
    assert forwarder["events"] == "PROCESS_LOG"
    assert forwarder["command"].endswith("-m pubsub_supervisor.supervision.log_forwarder")
    fatal = CONF["eventlistener:fatal_exit"]
    assert fatal["events"] == "PROCESS_STATE_FATAL"
    assert fatal["command"].endswith("-m pubsub_supervisor.supervision.fatal_listener")
    for name in LISTENERS:
        # Listeners start before the programs and stop after them.
        assert int(CONF[name]["priority"]) < min(
            int(CONF[f"program:{p}"]["priority"]) for p in PROGRAMS
        )


def test_the_sum_of_stop_waits_fits_compose_grace_period() -> None:
    # supervisord stops one program after the other, so the worst case is the sum.
    stopped = [f"program:{p}" for p in PROGRAMS] + LISTENERS
    total = sum(int(CONF[s].get("stopwaitsecs", "10")) for s in stopped)
    grace = seconds(str(compose_app()["stop_grace_period"]))
    assert total <= grace - STOP_MARGIN, (
        f"stopwaitsecs add up to {total} s; docker-compose.yml gives {grace} s: raise "
        f"stop_grace_period to at least {total + STOP_MARGIN}s or shorten a stopwaitsecs"
    )


def test_the_grace_period_has_room_for_another_service() -> None:
    # "Add your own service" (README.md) adds one 15 s program and edits no other file.
    stopped = [f"program:{p}" for p in PROGRAMS] + LISTENERS
    total = sum(int(CONF[s].get("stopwaitsecs", "10")) for s in stopped) + 15
    grace = seconds(str(compose_app()["stop_grace_period"]))
    assert total <= grace - STOP_MARGIN, (
        f"one more service would make stopwaitsecs add up to {total} s; docker-compose.yml "
        f"gives {grace} s: raise stop_grace_period to at least {total + STOP_MARGIN}s"
    )


def test_control_socket_is_private_and_there_is_no_tcp_port() -> None:
    assert CONF["unix_http_server"]["chmod"] == "0700"
    assert not CONF.has_section("inet_http_server")
    assert CONF["supervisorctl"]["serverurl"].startswith("unix://")


def test_supervisord_stays_in_the_foreground() -> None:
    # The container's tini runs it as its child; the container lives as long as it does.
    assert CONF["supervisord"]["nodaemon"] == "true"


def test_the_program_runner_drains_within_the_consumers_stopwaitsecs() -> None:
    consumers = [p for p in PROGRAMS if p != "web"]
    shortest = min(int(CONF[f"program:{p}"]["stopwaitsecs"]) for p in consumers)
    # The runner gives up waiting before supervisord kills, and waits for a whole stop.
    assert shortest > program.STOP_SECONDS
    assert ConsumerConfig().longest_stop <= program.STOP_SECONDS
