"""`python -m devtools.dev` with a real LocalStack and a real supervisord."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devtools.dev import EXIT_EMULATOR, EXIT_OK, EXIT_SUPERVISOR
from devtools.emulator import free_port, port_is_free
from tests.integration.helpers import (
    EMULATOR_VENV,
    REPO,
    copy_project,
    pid_alive,
    processes_rooted_at,
    require_emulator_venv,
    wait_for_file,
)
from tests.support.fixtures import stack_environment
from tests.support.orders import SKU
from tests.support.stack import Api, SupervisedStack, wait_for

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

    def alive(self) -> bool:
        """True while dev.py runs; fails with its output once it has exited."""
        assert self.proc.poll() is None, f"dev.py exited:\n{self.messages()[-3000:]}"
        return True


StartDev = Callable[..., DevRun]


@pytest.fixture(autouse=True)
def _require_emulator_venv() -> None:
    require_emulator_venv()


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[StartDev]:
    """Start dev.py on a free port with a throwaway conf and init dir; kill it if left over."""
    runs: list[DevRun] = []

    def start(
        conf: str = CONF, port: int | None = None, home: Path | None = None, **extra_env: str
    ) -> DevRun:
        """`home`: run that copy of the project whole (its conf, init hook and packages)."""
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
            **extra_env,
        }
        args: list[str | Path] = ["--state-dir", tmp_path / "state"]
        if home is None:
            init = tmp_path / "init" / "ready.d"
            init.mkdir(parents=True, exist_ok=True)
            hook = init / "10-marker.sh"
            hook.write_text(HOOK)
            hook.chmod(0o755)
            conf_path = tmp_path / "supervisord.conf"
            conf_path.write_text(conf)
            args += ["--conf", conf_path, "--init-dir", init.parent]
        else:
            # The copy's code, not this project's (installed editable in the venv).
            env |= {"PUBSUB_HOME": str(home), "PYTHONPATH": str(home)}
            args += ["--emulator-venv", EMULATOR_VENV]
        output = tmp_path / "dev.out"
        with output.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.dev", *map(str, args)],
                cwd=home or REPO,
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


#: A save reaches the next order within this long (the programs' restart is most of it).
RELOAD_SECONDS = float(os.environ.get("TEST_RELOAD_SECONDS", "5"))

#: The inventory handler's answer for a reserved order, and two edits of it.
PROCESSED = 'return Outcome(\n            "processed", data='
EDITED = 'return Outcome(\n            "processed", reason="{}", data='


def test_a_saved_handler_runs_the_next_order_and_a_broken_one_leaves_the_rest_running(
    start_dev: StartDev, tmp_path: Path
) -> None:
    home = copy_project(tmp_path / "project")
    handler = home / "services" / "inventory" / "handler.py"
    original = handler.read_text()
    assert PROCESSED in original
    env = stack_environment("http://unused", tmp_path / "data", CONSUMER_WAIT_SECONDS="2")
    keep = ("WEB_PORT", "DATA_DIR", "DATABASE_URL", "ORDER_RATE_LIMIT", "CONSUMER_WAIT_SECONDS")
    env = {k: v for k, v in env.items() if k in keep or k.startswith("MAX_ORDERS")}
    run = start_dev(home=home, **env)
    stack = SupervisedStack(tmp_path, {**env, "RESOURCE_PREFIX": "devtest"}, home=home)
    api = Api(stack.base_url)

    def up() -> bool:
        return run.alive() and stack.all_running()

    # supervisorctl is a Python start-up per look: look twice a second.
    wait_for(up, 240, "every program RUNNING", interval=0.5)
    wait_for(stack.ready, 120, "the web to answer /readyz")
    assert "watching" in run.messages()
    assert "make dev RELOAD=0" in run.messages()

    last_order: list[str] = []

    def inventory_reason(deadline: float) -> str | None:
        """Place an order; what the inventory service said of it, by `deadline`."""
        email = f"r-{uuid.uuid4().hex[:8]}@example.com"
        response = api.post_order(email, [{"sku": SKU, "quantity": 1}])
        assert response.status_code == 201, response.text
        last_order[:] = [response.json()["id"]]
        remaining = max(0.5, deadline - time.monotonic())
        order = api.wait_settled(response.json()["id"], timeout=remaining)
        reason: str | None = order["services"]["inventory"]["reason"]
        return reason

    def handled_by(reason: str, within: float) -> float:
        """Place an order every half second until one is handled with `reason`; fail unless
        that happens within `within` s. How long it took.

        Orders are not waited for one by one: one that arrives while the stopped program's
        last long poll is still open (a long poll cannot be cancelled) is taken by that poll
        and comes back after the queue's visibility timeout, handled by the new code."""
        started = time.monotonic()
        deadline = started + within
        pending: list[str] = []
        next_order = started
        while True:
            now = time.monotonic()
            if now >= next_order:
                email = f"r-{uuid.uuid4().hex[:8]}@example.com"
                response = api.post_order(email, [{"sku": SKU, "quantity": 1}])
                assert response.status_code == 201, response.text
                pending.append(response.json()["id"])
                next_order = now + 0.5
            for order_id in list(pending):
                inventory = api.order(order_id)["services"]["inventory"]
                if inventory["status"] == "pending":
                    continue
                if inventory["reason"] == reason:
                    return time.monotonic() - started
                pending.remove(order_id)  # handled by the code before the save
            assert time.monotonic() < deadline, f"no order handled with {reason!r} in {within} s"
            time.sleep(0.1)

    assert inventory_reason(time.monotonic() + 60) is None
    before = stack.status()

    # `pubsub trace` shows that order's path: the web, its relay, every service, the results.
    trace = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "pubsub"), "trace", last_order[0]],
        env={**stack.env, "PUBSUB_LOG_DIR": str(run.log_dir)},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert trace.returncode == 0, trace.stderr
    steps = [line.split(None, 2)[1:] for line in trace.stdout.splitlines()[1:]]

    def traced(program: str, message: str) -> bool:
        return any(p == program and rest.startswith(message) for p, rest in steps)

    assert traced("web", "order accepted"), trace.stdout
    # Published by the web on commit, or by the relay (web_worker) as its safety net.
    assert traced("web", "event published") or traced("web_worker", "event published"), trace.stdout
    for service in ("email", "inventory", "analytics"):
        assert traced(f"{service}_service", "order handled  status=processed"), trace.stdout
        assert traced("web_worker", f"order status updated  service={service}"), trace.stdout

    # A save: the next order is handled by the new code, and only inventory restarted.
    handler.write_text(original.replace(PROCESSED, EDITED.format("reserved by the saved code")))
    took = handled_by("reserved by the saved code", within=RELOAD_SECONDS)
    print(f"a saved handler: an order ran the new code {took:.1f} s after the save")
    after = stack.status()
    assert after["inventory_service"][1] != before["inventory_service"][1]
    for program in ("web", "web_worker", "email_service", "analytics_service"):
        assert after[program] == before[program], program
    assert "restarting inventory_service: services/inventory/handler.py changed" in run.messages()

    # A broken save: its error is on the console, the other programs and supervisord go on.
    handler.write_text(original + "\ndef broken(:\n")
    wait_for(lambda: "SyntaxError" in run.messages(), 60, "the SyntaxError on the console")
    # It fails on every start (FATAL after its retries, unless the machine is so loaded
    # that its imports outlast startsecs): supervisord and the other programs carry on.
    exited = "exited: inventory_service (exit status 1"
    wait_for(lambda: run.messages().count(exited) >= 2, 180, "inventory failing twice")
    assert run.proc.poll() is None
    assert stack.ready()
    status = stack.status()
    for program in ("web", "web_worker", "email_service", "analytics_service"):
        assert status[program] == before[program], program

    # The fix brings it back by itself, running the fixed code.
    handler.write_text(original.replace(PROCESSED, EDITED.format("reserved after the fix")))
    wait_for(
        lambda: stack.status()["inventory_service"][0] == "RUNNING", 60, "inventory", interval=0.5
    )
    handled_by("reserved after the fix", within=60)

    # The web: a template is read again as saved; its code comes with a HUP (same master).
    web_pid = stack.status()["web"][1]
    base = home / "web" / "templates" / "base.html"
    base.write_text(base.read_text().replace("</body>", "<p>saved template</p></body>"))
    wait_for(lambda: "saved template" in api.get("/").text, 10, "the saved template")
    health = home / "web" / "health.py"
    health.write_text(health.read_text().replace('{"status": "ok"}', '{"status": "saved"}'))

    def healthz() -> str | None:
        try:
            status: str = api.get("/healthz").json()["status"]
        except requests.ConnectionError:  # a keep-alive connection to a retired worker
            return None
        return status

    wait_for(lambda: healthz() == "saved", 60, "the saved web code")
    assert stack.status()["web"] == ("RUNNING", web_pid)
    assert "web reloads its workers (HUP): web/health.py changed" in run.messages()

    assert run.stop(signal.SIGINT) == EXIT_OK
