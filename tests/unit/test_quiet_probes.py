"""localstack/init/start.d/quiet-probes.py: probe requests leave the emulator's console."""

from __future__ import annotations

import logging
import runpy
from pathlib import Path
from typing import Any

import pytest

from pubsub_supervisor.clients import READINESS_AGENT, client_config

ROOT = Path(__file__).resolve().parents[2]
HOOK: dict[str, Any] = runpy.run_path(str(ROOT / "localstack/init/start.d/quiet-probes.py"))


def record(logger: str, message: str, args: tuple[object, ...], agent: str) -> logging.LogRecord:
    """A request line as LocalStack logs it (its headers in `request_headers`)."""
    line = logging.LogRecord(logger, logging.INFO, __file__, 1, message, args, None)
    line.request_headers = {"Host": "localstack:4566", "User-Agent": agent}
    return line


BOTO = "Boto3/1.40 md/Botocore#1.40 ua/2.1 os/linux"


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        # The compose healthcheck's and the launcher's readiness polls.
        (
            record(
                "localstack.request.http",
                "%s %s => %d",
                ("GET", "/_localstack/init/ready", 200),
                "Python-urllib/3.13",
            ),
            False,
        ),
        (
            record(
                "localstack.request.http",
                "%s %s => %d",
                ("GET", "/_localstack/health", 200),
                "curl/8",
            ),
            False,
        ),
        # The web's /readyz calls.
        (
            record(
                "localstack.request.aws",
                "AWS %s.%s => %s",
                ("sns", "GetTopicAttributes", 200),
                f"{BOTO} {READINESS_AGENT}",
            ),
            False,
        ),
        # The same call from anything else, and every other request, stay.
        (
            record(
                "localstack.request.aws",
                "AWS %s.%s => %s",
                ("sns", "GetTopicAttributes", 200),
                BOTO,
            ),
            True,
        ),
        (
            record(
                "localstack.request.aws", "AWS %s.%s => %s", ("sqs", "ReceiveMessage", 200), BOTO
            ),
            True,
        ),
        (
            record("localstack.request.http", "%s %s => %d", ("GET", "/_aws/ses", 200), "curl/8"),
            True,
        ),
        (record("localstack.request.http", "%s %s => %d", ("POST", "/", 200), BOTO), True),
    ],
)
def test_only_probe_requests_are_dropped(line: logging.LogRecord, shown: bool) -> None:
    assert HOOK["QuietProbes"]().filter(line) is shown


def test_the_hook_filters_both_request_loggers_once() -> None:
    HOOK["install"]()
    for name in ("localstack.request.aws", "localstack.request.http"):
        names = [type(f).__name__ for f in logging.getLogger(name).filters]
        assert names.count("QuietProbes") == 1, name


def test_the_web_marks_its_readiness_calls_as_the_hook_expects() -> None:
    assert HOOK["READINESS_AGENT"] == READINESS_AGENT
    config = client_config(agent=READINESS_AGENT)
    assert getattr(config, "user_agent_extra", None) == READINESS_AGENT


def test_a_line_the_filter_cannot_read_is_kept() -> None:
    line = record("localstack.request.http", "odd", (), BOTO)
    line.request_headers = "not a mapping"
    assert HOOK["QuietProbes"]().filter(line) is True
