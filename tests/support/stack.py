"""A real supervisord tree running every program, as `make dev` runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
CONF = ROOT / "supervisord.conf"
PROGRAMS = ("web", "web_worker", "email_service", "inventory_service", "analytics_service")


def wait_for[T](
    check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def provision(env: Mapping[str, str]) -> str:
    """Apply the topology that `env` names (`pubsub provision`); returns its output."""
    result = subprocess.run(
        [str(VENV / "bin" / "pubsub"), "provision"],
        env={**os.environ, **env, "ENV_FILE": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"pubsub provision failed: {result.stderr}")
    return result.stdout


class SupervisedStack:
    """supervisord with every program, configured through its environment.

    `home` is the project it runs (its supervisord.conf, the programs' working directory),
    and `programs` those that must be RUNNING: a copy of the project may have more.
    """

    def __init__(
        self,
        state_dir: Path,
        env: Mapping[str, str],
        home: Path = ROOT,
        programs: Sequence[str] = PROGRAMS,
    ) -> None:
        self.state_dir = state_dir
        self.home = home
        self.conf = home / "supervisord.conf"
        self.programs = tuple(programs)
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PUBSUB_"))},
            "PUBSUB_HOME": str(home),
            "PUBSUB_VENV": str(VENV),
            "PUBSUB_RUN_DIR": str(self.run_dir),
            "PUBSUB_LOG_DIR": str(self.log_dir),
            "ENV_FILE": "",
            **env,
        }
        self.web_port = int(self.env["WEB_PORT"])
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.console = state_dir / "console.log"

    def start(self, timeout: float = 90) -> None:
        """Start supervisord and wait until every program runs and /readyz answers 200."""
        for folder in (self.run_dir, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        with self.console.open("ab") as console:
            self.proc = subprocess.Popen(
                [str(VENV / "bin" / "supervisord"), "-n", "-c", str(self.conf)],
                env=self.env,
                cwd=self.home,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(self.all_running, timeout, "every program RUNNING")
            wait_for(self.ready, timeout, f"{self.base_url}/readyz to answer 200")
        except AssertionError:
            self.stop()
            raise AssertionError(f"stack did not start; console:\n{self.console_tail()}") from None

    def stop(self, timeout: float = 120) -> None:
        """SIGTERM supervisord (it stops every program) and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def ctl(self, *args: str, check: bool = True) -> str:
        """Run supervisorctl against this tree; returns its output."""
        result = subprocess.run(
            [str(VENV / "bin" / "supervisorctl"), "-c", str(self.conf), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # supervisorctl exits 3 when a program is not RUNNING; callers read the states.
        if check and result.returncode not in (0, 3):
            raise AssertionError(f"supervisorctl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def status(self) -> dict[str, tuple[str, int | None]]:
        """Program name -> (state, pid)."""
        states: dict[str, tuple[str, int | None]] = {}
        for line in self.ctl("status", check=False).splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
                states[parts[0]] = (parts[1], pid)
        return states

    def all_running(self) -> bool:
        """True when every program is RUNNING."""
        status = self.status()
        return all(status.get(p, ("",))[0] == "RUNNING" for p in self.programs)

    def ready(self) -> bool:
        """True when /readyz answers 200."""
        try:
            return requests.get(f"{self.base_url}/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def log_text(self, program: str) -> str:
        """Everything a program has logged so far."""
        path = self.log_dir / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def console_tail(self, lines: int = 60) -> str:
        """The end of supervisord's console output."""
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Api:
    """The web's JSON API over real HTTP, as a careful client uses it.

    gunicorn closes a kept-alive connection after a few idle seconds; a request sent on it
    at that moment is reset. A GET is retried on a fresh connection then. An order is not
    (RFC 9112 section 9.3.1: the server may have taken it), so it is sent on a connection
    of its own, which no such close can race.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        retry = Retry(total=2, allowed_methods={"GET"}, status=0, backoff_factor=0.1)
        self.http.mount("http://", HTTPAdapter(max_retries=retry))

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST any path, on a connection of its own."""
        headers = {"Connection": "close", **kwargs.pop("headers", {})}
        return self.http.post(f"{self.base_url}{path}", headers=headers, timeout=10, **kwargs)

    def post_order(self, email: str, items: list[dict[str, Any]]) -> requests.Response:
        """POST /api/orders."""
        return self.post("/api/orders", json={"customer_email": email, "items": items})

    def order(self, order_id: str) -> dict[str, Any]:
        """GET /api/orders/<id> (must exist)."""
        response = self.http.get(f"{self.base_url}/api/orders/{order_id}", timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def get(self, path: str) -> requests.Response:
        """GET any path."""
        return self.http.get(f"{self.base_url}{path}", timeout=10)

    def wait_settled(self, order_id: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until no service is `pending` for the order; return the order."""

        def settled() -> dict[str, Any] | None:
            order = self.order(order_id)
            pending = any(s["status"] == "pending" for s in order["services"].values())
            return None if pending else order

        return wait_for(settled, timeout, f"order {order_id} to leave pending", interval=0.2)
