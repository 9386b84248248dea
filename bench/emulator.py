"""A private native LocalStack for the benchmark (until the shared launcher lands)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

#: How long LocalStack gets to answer its health check after starting.
START_TIMEOUT_S = 60.0
#: How long a SIGTERM may take before the emulator is killed outright.
STOP_GRACE_S = 10.0


def free_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalStack:
    """Native LocalStack serving SQS on 127.0.0.1 from its own venv and state dir."""

    def __init__(self, *, venv: Path, state_dir: Path, port: int | None = None) -> None:
        self.venv = venv
        self.state_dir = state_dir
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """Where clients reach the emulator."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The emulator's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the emulator and wait until SQS answers."""
        python = self.venv / "bin" / "python"
        if not python.exists():
            raise RuntimeError(f"{python} is missing: run `make emulator-venv` first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "LOCALSTACK_HOST": f"127.0.0.1:{self.port}",
            "SERVICES": "sqs,sns,ses",
            "SQS_ENDPOINT_STRATEGY": "path",
            # The machine looks like a container; without this FILESYSTEM_ROOT is ignored.
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(self.state_dir),
        }
        log = (self.state_dir / "localstack.log").open("ab")
        self._proc = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"LocalStack exited with {self._proc.returncode}; "
                    f"see {self.state_dir / 'localstack.log'}"
                )
            if self._sqs_ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"LocalStack did not become ready in {START_TIMEOUT_S:.0f} s")

    def _sqs_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.endpoint_url}/_localstack/health", timeout=1
            ) as response:
                body = response.read().decode()
        except (urllib.error.URLError, OSError):
            return False
        return '"sqs": "available"' in body or '"sqs": "running"' in body

    def stop(self) -> None:
        """Stop the emulator: SIGTERM, then SIGKILL after a grace period."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            # A LocalStack that failed to bind ignores SIGTERM: kill it.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
