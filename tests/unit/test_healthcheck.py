"""scripts/healthcheck.sh: the programs it requires, and its verdicts with a stand-in
supervisorctl."""

from __future__ import annotations

import configparser
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "healthcheck.sh"


def conf_programs() -> list[str]:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(" ;",))
    parser.read(ROOT / "supervisord.conf")
    return [s.removeprefix("program:") for s in parser.sections() if s.startswith("program:")]


class Readyz(BaseHTTPRequestHandler):
    """Answers /readyz with the status the test sets on the server."""

    def do_GET(self) -> None:
        status: int = self.server.status  # type: ignore[attr-defined]
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def readyz() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_check(
    tmp_path: Path,
    server: ThreadingHTTPServer,
    states: dict[str, str],
    code: int = 0,
    home: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """Run the healthcheck with a supervisorctl that reports `states` and exits with `code`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    lines = "\n".join(
        f"{name:<32} {state}   pid 7, uptime 0:01:00" for name, state in states.items()
    )
    stub = bin_dir / "supervisorctl"
    stub.write_text(f"#!/bin/sh\ncat <<'EOF'\n{lines}\nEOF\nexit {code}\n")
    stub.chmod(0o755)
    host, port = server.server_address[:2]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "READYZ_URL": f"http://{host!s}:{port}/readyz",
        "PUBSUB_HOME": str(home),
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def all_running() -> dict[str, str]:
    return dict.fromkeys([*conf_programs(), "log_forwarder", "fatal_exit"], "RUNNING")


def test_healthy_when_every_program_runs_and_web_is_ready(
    tmp_path: Path, readyz: ThreadingHTTPServer
) -> None:
    result = run_check(tmp_path, readyz, all_running())
    assert result.returncode == 0, result.stderr
    # Five in this project: the web, its worker and the three services.
    assert f"healthy: {len(conf_programs())} programs RUNNING" in result.stdout


@pytest.mark.parametrize("program", conf_programs())
def test_every_program_of_supervisord_conf_is_required(
    tmp_path: Path, readyz: ThreadingHTTPServer, program: str
) -> None:
    states = all_running()
    del states[program]
    result = run_check(tmp_path, readyz, states, code=3)
    assert result.returncode == 1
    assert f"program {program} is missing, not RUNNING" in result.stderr


def test_a_program_added_to_supervisord_conf_is_required_too(
    tmp_path: Path, readyz: ThreadingHTTPServer
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    conf = (ROOT / "supervisord.conf").read_text()
    (home / "supervisord.conf").write_text(conf + "\n[program:probe_service]\ncommand=true\n")
    result = run_check(tmp_path, readyz, all_running(), code=3, home=home)
    assert result.returncode == 1
    assert "program probe_service is missing, not RUNNING" in result.stderr
    states = {**all_running(), "probe_service": "RUNNING"}
    result = run_check(tmp_path, readyz, states, home=home)
    assert result.returncode == 0, result.stderr
    assert f"healthy: {len(conf_programs()) + 1} programs RUNNING" in result.stdout


@pytest.mark.parametrize(("state", "shown"), [("STARTING", "STARTING"), (None, "missing")])
def test_unhealthy_when_a_program_is_not_running(
    tmp_path: Path, readyz: ThreadingHTTPServer, state: str | None, shown: str
) -> None:
    states = all_running()
    if state is None:
        del states["inventory_service"]
    else:
        states["inventory_service"] = state
    # supervisorctl exits 3 when a program is not RUNNING.
    result = run_check(tmp_path, readyz, states, code=3)
    assert result.returncode == 1
    assert f"program inventory_service is {shown}, not RUNNING" in result.stderr


def test_unhealthy_when_supervisorctl_fails(tmp_path: Path, readyz: ThreadingHTTPServer) -> None:
    result = run_check(tmp_path, readyz, {}, code=2)
    assert result.returncode == 1
    assert "supervisorctl status failed" in result.stderr


def test_unhealthy_when_web_is_not_ready(tmp_path: Path, readyz: ThreadingHTTPServer) -> None:
    readyz.status = 503  # type: ignore[attr-defined]
    result = run_check(tmp_path, readyz, all_running())
    assert result.returncode == 1
    assert "web is not ready" in result.stderr
