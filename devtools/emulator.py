"""Run LocalStack natively (no Docker) from its own virtualenv, for `make dev` and the tests."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: Default gateway port, the same as LocalStack's own.
DEFAULT_PORT = 4566

#: Services the stack uses: the init hook looks up the account with STS.
STACK_SERVICES = ("sns", "sqs", "ses", "sts")

#: Interpreter variables of the caller's (app) virtualenv that must not reach LocalStack's.
_SCRUBBED_ENV = frozenset({"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"})

#: Settings the launcher owns; letting callers override them would break the port/path wiring.
FIXED_ENV_KEYS = frozenset(
    {
        "GATEWAY_LISTEN",
        "SERVICES",
        "FILESYSTEM_ROOT",
        "OVERRIDE_IN_DOCKER",
        "LOCALSTACK_HOST",
        "SQS_ENDPOINT_STRATEGY",
        "AWS_ENDPOINT_URL",
    }
)

#: Defaults that keep an offline emulator quiet and self-contained; callers may override them.
_QUIET_DEFAULTS: Mapping[str, str] = {
    # No DNS server: it would bind UDP 53 (shared by every stack on the machine) and look
    # up upstream servers that are unreachable offline.
    "DNS_ADDRESS": "0",
    # No downloads or analytics: the only reachable hosts are package registries.
    "SKIP_SSL_CERT_DOWNLOAD": "1",
    "DISABLE_EVENTS": "1",
}

#: Credentials for the init hooks' AWS clients; LocalStack accepts any.
_AWS_DEFAULTS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}

_POLL_INTERVAL = 0.25
_PROGRESS_EVERY = 5.0
_LOG_TAIL_LINES = 40
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


class EmulatorError(RuntimeError):
    """The emulator could not be started or did not become ready."""


class PortInUseError(EmulatorError):
    """The gateway port is already bound by another process."""


class EmulatorNotInstalledError(EmulatorError):
    """The LocalStack virtualenv is missing or incomplete."""


class InitHookError(EmulatorError):
    """A ready.d init hook ended in the ERROR state."""


class StartupTimeoutError(EmulatorError):
    """LocalStack did not finish its init hooks in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Tell whether a listener could bind host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as servers use it, so sockets in TIME_WAIT do not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


def port_from_url(url: str | None, default: int = DEFAULT_PORT) -> int:
    """Return the port of an endpoint URL, or `default` when there is none."""
    if not url:
        return default
    return urlsplit(url).port or default


def _tail(path: Path, start: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last lines written to a log file after byte offset `start`."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(start, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class NativeLocalStack:
    """A LocalStack process started from a virtualenv, with init hooks from `init_dir`."""

    def __init__(
        self,
        *,
        port: int = DEFAULT_PORT,
        state_dir: Path,
        init_dir: Path,
        venv: Path,
        services: Sequence[str] = ("sns", "sqs", "ses"),
        extra_env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        stop_grace: float = 10,
    ) -> None:
        clash = FIXED_ENV_KEYS & set(extra_env or {})
        if clash:
            raise ValueError(
                f"extra_env may not set {', '.join(sorted(clash))}: the launcher owns them"
            )
        self.port = port
        self.state_dir = Path(state_dir).absolute()
        self.init_dir = Path(init_dir).absolute()
        self.venv = Path(venv).absolute()
        self.services = tuple(services)
        self.extra_env = dict(extra_env or {})
        self.log_path = Path(log_path).absolute() if log_path else self.state_dir / "localstack.log"
        self.stop_grace = stop_grace
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_start = 0
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        """The gateway URL clients use."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The LocalStack process id (also its process group id) while it runs."""
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        """Tell whether the LocalStack process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def python(self) -> Path:
        """The interpreter of the LocalStack virtualenv."""
        return self.venv / "bin" / "python"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(self.stop_grace)

    # -- start ---------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise an EmulatorError saying what to do if LocalStack cannot start as configured."""
        if not self.python.exists() or not any(
            self.venv.glob("lib/python3*/site-packages/localstack/runtime/main.py")
        ):
            raise EmulatorNotInstalledError(
                f"LocalStack is not installed in {self.venv}: run: make emulator-venv"
            )
        if not port_is_free(self.port):
            raise PortInUseError(
                f"port {self.port} on 127.0.0.1 is already in use, so LocalStack cannot listen "
                f"there. Stop whatever holds it (see: ss -ltnp 'sport = :{self.port}'), or use "
                f"another port: set AWS_ENDPOINT_URL=http://127.0.0.1:PORT for `make dev`, "
                f"or pass --port to `python -m devtools.emulator`."
            )
        if not self.init_dir.is_dir():
            raise EmulatorError(f"init hook directory {self.init_dir} does not exist")
        for script in sorted(self.init_dir.glob("*.d/**/*.sh")):
            # LocalStack runs .sh hooks directly: without the x bit they fail with EACCES.
            if not os.access(script, os.X_OK):
                raise EmulatorError(f"init hook {script} is not executable: run: chmod +x {script}")

    def start(self, timeout: float = 120) -> None:
        """Start LocalStack and wait until its ready.d hooks have all run successfully."""
        if self._proc is not None and self._proc.poll() is None:
            raise EmulatorError(f"LocalStack is already running (pid {self._proc.pid})")
        self.check()
        self._link_init_dir()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Appended to, so the log of a run that died is still there after the next start.
        if self.log_path.exists() and self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        self._log_file = self.log_path.open("ab")
        self._log_start = self._log_file.tell()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._log_file.write(f"--- {stamp} starting on {self.endpoint_url} ---\n".encode())
        self._log_file.flush()
        started = time.monotonic()
        log.info("starting LocalStack on %s (log: %s)", self.endpoint_url, self.log_path)
        try:
            self._proc = subprocess.Popen(
                [str(self.python), "-m", "localstack.runtime.main"],
                env=self.child_env(),
                cwd=self.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                # Its own session: terminal signals do not reach it directly, so the owner
                # decides the shutdown order, and stop() can signal all it spawned at once.
                start_new_session=True,
            )
            self._wait_ready(started, timeout)
        except BaseException:
            self.stop(self.stop_grace)
            raise
        self.startup_seconds = time.monotonic() - started
        log.info("LocalStack ready on %s in %.1f s", self.endpoint_url, self.startup_seconds)

    def _link_init_dir(self) -> None:
        """Point FILESYSTEM_ROOT/etc/localstack/init at the project's init hook directory."""
        link = self.state_dir / "etc" / "localstack" / "init"
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            if link.readlink() == self.init_dir:
                return
            link.unlink()
        elif link.exists():
            raise EmulatorError(
                f"{link} is a real directory; LocalStack reads init hooks from it. "
                f"Remove it (or the whole {self.state_dir}) and start again."
            )
        link.symlink_to(self.init_dir, target_is_directory=True)

    def child_env(self) -> dict[str, str]:
        """Build LocalStack's environment: the caller's, minus its virtualenv, plus our settings."""
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        # AWS_ENDPOINT_URL_<SERVICE> would send the hooks' clients somewhere else.
        env = {k: v for k, v in env.items() if not k.startswith("AWS_ENDPOINT_URL_")}
        foreign_bins = {os.path.join(sys.prefix, "bin")}
        if "VIRTUAL_ENV" in os.environ:
            foreign_bins.add(os.path.join(os.environ["VIRTUAL_ENV"], "bin"))
        path = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p not in foreign_bins]
        # The emulator venv first, so .sh hooks find its `aws`/`python`.
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), *path])
        for key, value in {**_QUIET_DEFAULTS, **_AWS_DEFAULTS}.items():
            env.setdefault(key, value)
        env.update(self.extra_env)
        env.update(
            {
                "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
                # Queue URLs must name a host that resolves offline, i.e.
                # http://127.0.0.1:PORT/queue/REGION/ACCOUNT/NAME, not *.localstack.cloud.
                "SQS_ENDPOINT_STRATEGY": "path",
                "LOCALSTACK_HOST": f"127.0.0.1:{self.port}",
                "SERVICES": ",".join(self.services),
                "FILESYSTEM_ROOT": str(self.state_dir),
                # This machine looks like a container (/.dockerenv); without this LocalStack
                # ignores FILESYSTEM_ROOT and reads hooks from /etc/localstack/init.
                "OVERRIDE_IN_DOCKER": "0",
                # The init hooks' boto3 clients talk to this emulator.
                "AWS_ENDPOINT_URL": self.endpoint_url,
            }
        )
        return env

    def _wait_ready(self, started: float, timeout: float) -> None:
        """Poll /_localstack/init/ready until it reports completed, failing fast on errors."""
        assert self._proc is not None
        deadline = started + timeout
        next_progress = started + _PROGRESS_EVERY
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EmulatorError(
                    f"LocalStack exited with code {code} before it was ready."
                    f"\n{self._log_excerpt()}"
                )
            status = self._ready_status()
            if status is not None and status.get("completed") is True:
                failed = [
                    str(s.get("name"))
                    for s in status.get("scripts", [])
                    if s.get("state") == "ERROR"
                ]
                if failed:
                    raise InitHookError(
                        f"LocalStack init hook(s) failed: {', '.join(failed)} "
                        f"(in {self.init_dir}/ready.d).\n{self._log_excerpt()}"
                    )
                return
            now = time.monotonic()
            if now >= deadline:
                raise StartupTimeoutError(
                    f"LocalStack was not ready after {timeout:.0f} s.\n{self._log_excerpt()}"
                )
            if now >= next_progress:
                phase = "running ready.d hooks" if status is not None else "starting"
                log.info("waiting for LocalStack (%s, %.0f s)", phase, now - started)
                next_progress = now + _PROGRESS_EVERY
            time.sleep(_POLL_INTERVAL)

    def _log_excerpt(self) -> str:
        """The end of this run's part of the log, for error messages."""
        return f"--- last lines of {self.log_path} ---\n{_tail(self.log_path, self._log_start)}"

    def _ready_status(self) -> dict[str, Any] | None:
        """Return the decoded /_localstack/init/ready answer, or None if it is not serving yet."""
        # No proxies: a developer's HTTP(S)_PROXY must not capture requests to 127.0.0.1.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.endpoint_url}/_localstack/init/ready", timeout=2) as resp:
                body: dict[str, Any] = json.load(resp)
                return body
        except (OSError, ValueError):
            # URLError, connection refused/reset, timeouts, and half-written JSON while booting.
            return None

    # -- stop ----------------------------------------------------------------------------------

    def stop(self, grace: float = 10) -> None:
        """Stop LocalStack: SIGTERM to its process group, then SIGKILL after `grace` seconds."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                pgid = proc.pid  # start_new_session made it the group leader
                if proc.poll() is None:
                    log.info("stopping LocalStack (pid %d)", proc.pid)
                    _signal_group(pgid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=grace)
                    except subprocess.TimeoutExpired:
                        # It ignores SIGTERM when it failed to bind its port, for one.
                        log.warning(
                            "LocalStack did not exit within %.1f s of SIGTERM, killing it", grace
                        )
                        _signal_group(pgid, signal.SIGKILL)
                        proc.wait()
                # Hook children or helpers that outlived the leader.
                _signal_group(pgid, signal.SIGKILL)
                _wait_group_gone(pgid, timeout=2)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send a signal to a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    """Wait until no process of a group is left (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)
    log.warning("processes of group %d are still present after SIGKILL", pgid)


# -- command line --------------------------------------------------------------------------------


def _repo_root() -> Path:
    """The checkout this package lives in."""
    return Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    """Run LocalStack in the foreground until SIGINT or SIGTERM."""
    root = _repo_root()
    parser = argparse.ArgumentParser(prog="python -m devtools.emulator", description=main.__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=port_from_url(os.environ.get("AWS_ENDPOINT_URL")),
        help="gateway port (default: the port of $AWS_ENDPOINT_URL, else 4566; 0 picks a free one)",
    )
    parser.add_argument("--state-dir", type=Path, default=root / "var" / "localstack")
    parser.add_argument("--init-dir", type=Path, default=root / "localstack" / "init")
    parser.add_argument("--venv", type=Path, default=root / ".venv-localstack")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="emulator: %(message)s", stream=sys.stderr)

    def interrupt(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        raise KeyboardInterrupt

    emulator = NativeLocalStack(
        port=args.port or free_port(),
        state_dir=args.state_dir,
        init_dir=args.init_dir,
        venv=args.venv,
        services=STACK_SERVICES,
        # The project's hook imports the topology from the repo; other settings it reads
        # (RESOURCE_PREFIX, ...) come from the environment as it is.
        extra_env={"PUBSUB_SOURCE": str(root), "PUBSUB_HOME": str(root)},
    )
    # Both unwind through `finally`: LocalStack runs in its own session and would outlive us.
    # SIGINT explicitly too: a shell starting us in the background leaves it ignored.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        emulator.start(timeout=args.timeout)
        # Scripts (the benchmark harness) read the endpoint from the first stdout line.
        print(emulator.endpoint_url, flush=True)  # noqa: T201
        while emulator.is_running():
            time.sleep(0.5)
        log.error("LocalStack exited unexpectedly; see %s", emulator.log_path)
        return 1
    except KeyboardInterrupt:
        return 0 if emulator.startup_seconds is not None else 130
    except EmulatorError as exc:
        log.error("%s", exc)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
