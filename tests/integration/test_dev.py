"""`python -m devtools.dev` with a real LocalStack and a real supervisord."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.dev import EXIT_EMULATOR, EXIT_OK, EXIT_SUPERVISOR
from devtools.emulator import free_port, port_is_free
from tests.integration.helpers import (
    REPO,
    pid_alive,
    processes_rooted_at,
    require_emulator_venv,
    wait_for_file,
)

pytestmark = pytest.mark.integration

#: A minimal supervisord.conf honouring the contract dev.py fills: one program that records
#: the environment it got and its pid, then sleeps.
CONF = """\
[unix_http_server]
file=%(ENV_PUBSUB_RUN_DIR)s/supervisor.sock

[supervisord]
nodaemon=true
pidfile=%(ENV_PUBSUB_RUN_DIR)s/supervisord.pid
logfile=%(ENV_PUBSUB_LOG_DIR)s/supervisord.log

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:probe]
command=/bin/sh -c 'env > %(ENV_PUBSUB_LOG_DIR)s/probe.env.tmp; echo $$ > %(ENV_PUBSUB_LOG_DIR)s/probe.pid; mv %(ENV_PUBSUB_LOG_DIR)s/probe.env.tmp %(ENV_PUBSUB_LOG_DIR)s/probe.env; exec sleep 600'
directory=%(ENV_PUBSUB_HOME)s
stdout_logfile=%(ENV_PUBSUB_LOG_DIR)s/probe.log
redirect_stderr=true
stopasgroup=true
killasgroup=true
stopwaitsecs=5
"""  # noqa: E501

HOOK = """\
#!/bin/sh
printf '%s' "$RESOURCE_PREFIX" > "$MARKER_DIR/hook.marker"
"""


@dataclass
class DevRun:
    """One `python -m devtools.dev` process and the paths it uses."""

    proc: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    run_dir: Path
    log_dir: Path
    output: Path

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 120) -> int:
        """Send a signal (Ctrl-C by default) and return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def messages(self) -> str:
        """What dev.py and supervisord printed."""
        return self.output.read_text(errors="replace")


StartDev = Callable[..., DevRun]


@pytest.fixture(autouse=True)
def _require_emulator_venv() -> None:
    require_emulator_venv()


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[StartDev]:
    """Start dev.py on a free port with a throwaway conf and init dir; kill it if left over."""
    runs: list[DevRun] = []

    def start(conf: str = CONF, port: int | None = None) -> DevRun:
        init = tmp_path / "init" / "ready.d"
        init.mkdir(parents=True, exist_ok=True)
        hook = init / "10-marker.sh"
        hook.write_text(HOOK)
        hook.chmod(0o755)
        conf_path = tmp_path / "supervisord.conf"
        conf_path.write_text(conf)
        port = port or free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PUBSUB_", "VIRTUAL"))
        }
        env |= {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "PUBSUB_RUN_DIR": str(tmp_path / "run"),
            "PUBSUB_LOG_DIR": str(tmp_path / "log"),
            "RESOURCE_PREFIX": "devtest",
            "MARKER_DIR": str(tmp_path),
            "ENV_FILE": "",  # keep a developer's .env out
        }
        output = tmp_path / "dev.out"
        args = ["--conf", conf_path, "--state-dir", tmp_path / "state", "--init-dir", init.parent]
        with output.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.dev", *map(str, args)],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        run = DevRun(proc, port, tmp_path / "state", tmp_path / "run", tmp_path / "log", output)
        runs.append(run)
        return run

    yield start
    # A failed test must not leave a stack running on the machine.
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
        pidfile = run.run_dir / "supervisord.pid"
        if pidfile.exists() and pid_alive(pid := int(pidfile.read_text())):
            os.kill(pid, signal.SIGTERM)
        for pid in processes_rooted_at(run.state_dir):
            os.kill(pid, signal.SIGKILL)


def test_dev_runs_emulator_and_supervisord_and_stops_both_on_ctrl_c(
    start_dev: StartDev, tmp_path: Path
) -> None:
    run: DevRun = start_dev()

    env_text = wait_for_file(run.log_dir / "probe.env", timeout=180)
    probe_pid = int(wait_for_file(run.log_dir / "probe.pid", timeout=10))
    supervisord_pid = int(wait_for_file(run.run_dir / "supervisord.pid", timeout=10))
    emulator_pids = processes_rooted_at(run.state_dir)
    env = dict(line.split("=", 1) for line in env_text.splitlines() if "=" in line)

    # The emulator ran its ready.d hooks (with the caller's settings) before supervisord started.
    assert (tmp_path / "hook.marker").read_text() == "devtest"
    assert emulator_pids
    assert not port_is_free(run.port)
    assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{run.port}"
    assert env["AWS_ACCESS_KEY_ID"] == "test"
    assert env["AWS_SECRET_ACCESS_KEY"] == "test"
    assert env["PUBSUB_HOME"] == str(REPO)
    assert env["PUBSUB_VENV"] == sys.prefix
    assert env["PUBSUB_RUN_DIR"] == str(run.run_dir)
    assert env["PUBSUB_LOG_DIR"] == str(run.log_dir)
    assert env["RESOURCE_PREFIX"] == "devtest"

    assert run.stop(signal.SIGINT) == EXIT_OK

    assert not pid_alive(probe_pid)
    assert not pid_alive(supervisord_pid)
    assert processes_rooted_at(run.state_dir) == []
    assert port_is_free(run.port)
    messages = run.messages()
    assert messages.index("stopping supervisord") < messages.index("stopping LocalStack")


def test_sigterm_stops_everything_too(start_dev: StartDev) -> None:
    run: DevRun = start_dev()
    probe_pid = int(wait_for_file(run.log_dir / "probe.pid", timeout=180))

    assert run.stop(signal.SIGTERM) == EXIT_OK

    assert not pid_alive(probe_pid)
    assert processes_rooted_at(run.state_dir) == []


def test_port_in_use_fails_fast_without_starting_supervisord(start_dev: StartDev) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        run: DevRun = start_dev(port=sock.getsockname()[1])

        code = run.proc.wait(timeout=60)

    assert code == EXIT_EMULATOR
    assert "already in use" in run.messages()
    assert "AWS_ENDPOINT_URL=http://127.0.0.1:PORT" in run.messages()
    assert not (run.run_dir / "supervisord.pid").exists()
    assert processes_rooted_at(run.state_dir) == []


def test_supervisord_failing_to_start_stops_the_emulator(start_dev: StartDev) -> None:
    broken = CONF + textwrap.dedent(
        """
        [program:broken]
        command=%(ENV_PUBSUB_NO_SUCH_VARIABLE)s
        """
    )
    run: DevRun = start_dev(conf=broken)

    code = run.proc.wait(timeout=180)

    assert code == EXIT_SUPERVISOR
    assert "supervisord exited at startup" in run.messages()
    assert processes_rooted_at(run.state_dir) == []
