"""`make dev`: LocalStack natively, then every program under one supervisord, in the foreground."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from devtools.emulator import (
    STACK_SERVICES,
    EmulatorError,
    NativeLocalStack,
    port_from_url,
)
from devtools.reload import Reloader
from pubsub_supervisor.settings import Settings
from pubsub_supervisor.supervision.fatal_listener import DEV_RELOAD_ENV
from pubsub_supervisor.topology import HOOK_ENV

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_EMULATOR = 3
EXIT_SUPERVISOR = 4

#: Where `make dev` runs its emulator when AWS_ENDPOINT_URL is unset.
DEFAULT_ENDPOINT = "http://127.0.0.1:4566"

#: How long supervisord gets to stop its programs before it is killed.
SUPERVISOR_STOP_TIMEOUT = 60.0

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


class DevConfigError(Exception):
    """The environment does not describe a stack `make dev` can run."""


class Credentials(BaseSettings):
    """Keys for the emulator; boto3 reads them only from the environment, never from .env."""

    model_config = SettingsConfigDict(extra="ignore")

    aws_access_key_id: str = "test"
    aws_secret_access_key: str = "test"  # noqa: S105 - LocalStack accepts any credentials


def env_file_for(root: Path, environ: Mapping[str, str]) -> Path | None:
    """The .env the programs read: ENV_FILE (empty: none) or .env, relative to the repo root."""
    name = environ.get("ENV_FILE", ".env")
    return root / name if name else None


@dataclass(frozen=True)
class DevPlan:
    """Everything `make dev` starts, resolved from the environment, .env and defaults."""

    root: Path
    conf: Path
    venv: Path
    run_dir: Path
    log_dir: Path
    endpoint_url: str
    settings: Settings
    credentials: Credentials
    #: Restart the programs whose code changes (devtools/reload.py); RELOAD=0 turns it off.
    reload: bool = True

    @classmethod
    def resolve(
        cls, root: Path, conf: Path, environ: Mapping[str, str], *, reload: bool = True
    ) -> DevPlan:
        """Build the plan from the same Settings the programs read (environment over .env)."""
        env_file = env_file_for(root, environ)
        try:
            # _env_file is a BaseSettings init option that mypy cannot see without the
            # pydantic plugin; the programs read the same file (they run in the repo root).
            settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
            credentials = Credentials(_env_file=env_file)  # type: ignore[call-arg]
        except ValidationError as exc:
            raise DevConfigError(f"invalid settings (environment or {env_file}):\n{exc}") from exc
        endpoint_url = settings.aws_endpoint_url or DEFAULT_ENDPOINT
        url = urlsplit(endpoint_url)
        if url.scheme != "http" or url.hostname not in _LOCAL_HOSTS:
            raise DevConfigError(
                f"AWS_ENDPOINT_URL={endpoint_url} does not name a local emulator, "
                f"but `make dev` starts one on 127.0.0.1. Unset AWS_ENDPOINT_URL, or set it to "
                f"http://127.0.0.1:PORT to choose the port."
            )

        def path_var(name: str, default: Path) -> Path:
            value = environ.get(name)
            return (root / value).resolve() if value else default

        in_venv = sys.prefix != sys.base_prefix
        return cls(
            root=root,
            conf=conf,
            venv=path_var("PUBSUB_VENV", Path(sys.prefix) if in_venv else root / ".venv"),
            run_dir=path_var("PUBSUB_RUN_DIR", root / "var" / "run"),
            log_dir=path_var("PUBSUB_LOG_DIR", root / "var" / "log"),
            endpoint_url=endpoint_url,
            settings=settings,
            credentials=credentials,
            reload=reload,
        )

    @property
    def port(self) -> int:
        """The emulator's gateway port."""
        return port_from_url(self.endpoint_url)

    @property
    def aws_env(self) -> dict[str, str]:
        """The AWS variables every program and the init hook share."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.settings.aws_region,
            "AWS_DEFAULT_REGION": self.settings.aws_region,
            "AWS_ACCESS_KEY_ID": self.credentials.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.credentials.aws_secret_access_key,
        }

    def emulator_env(self) -> dict[str, str]:
        """Extra variables for LocalStack: the settings its init hook reads, and where we are."""
        # The hook cannot import Settings (it runs in LocalStack's interpreter), so it gets
        # the resolved values: resources then match what the programs look for.
        env = {name: str(getattr(self.settings, name.lower())) for name in HOOK_ENV}
        env |= {k: v for k, v in self.aws_env.items() if k != "AWS_ENDPOINT_URL"}
        env["PUBSUB_SOURCE"] = str(self.root)
        env["PUBSUB_HOME"] = str(self.root)
        return env

    def supervisor_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment supervisord.conf expects (user-set PUBSUB_* dirs are kept)."""
        env = dict(environ)
        env.update(
            {
                "PUBSUB_HOME": str(self.root),
                "PUBSUB_VENV": str(self.venv),
                "PUBSUB_RUN_DIR": str(self.run_dir),
                "PUBSUB_LOG_DIR": str(self.log_dir),
            }
        )
        env.update(self.aws_env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.reload:
            # The fatal_exit listener only reports a FATAL program; the reloader restarts it.
            env[DEV_RELOAD_ENV] = "1"
            # Templates are read again when they change, so editing one needs no restart.
            env.setdefault("WEB_TEMPLATES_AUTO_RELOAD", "true")
        return env

    @property
    def socket_path(self) -> Path:
        """supervisord's control socket (supervisord.conf's [unix_http_server])."""
        return self.run_dir / "supervisor.sock"

    def check(self, *, supervisor: bool = True) -> None:
        """Raise DevConfigError saying what to do if a part is missing."""
        if supervisor and not self.conf.is_file():
            raise DevConfigError(f"{self.conf} not found: `make dev` needs the supervisord config")
        if supervisor and not (self.venv / "bin" / "supervisord").exists():
            raise DevConfigError(f"supervisord is not installed in {self.venv}: run: make venv")


def _repo_root() -> Path:
    """The checkout this package lives in, unless PUBSUB_HOME says otherwise."""
    home = os.environ.get("PUBSUB_HOME")
    return Path(home).resolve() if home else Path(__file__).resolve().parent.parent


def stop_supervisor(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM supervisord so it stops its programs in order; SIGKILL it after `timeout`."""
    if proc.poll() is not None:
        return
    log.info("stopping supervisord (pid %d, up to %.0f s)", proc.pid, timeout)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("supervisord did not stop in %.0f s, killing it", timeout)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _interrupt(signum: int, _frame: object) -> None:
    """Turn SIGTERM into the same orderly unwinding as Ctrl-C."""
    log.info("received %s, stopping", signal.Signals(signum).name)
    raise KeyboardInterrupt


def _already_stopping(signum: int, _frame: object) -> None:
    """Ignore repeated signals: the orderly shutdown is bounded and already under way."""
    log.info("already stopping (received %s); please wait", signal.Signals(signum).name)


def _with_emulator(
    emulator: NativeLocalStack, body: Callable[[], int], stop_first: Callable[[], None]
) -> int:
    """Start the emulator, run `body` until a signal, then `stop_first()` and stop the emulator."""
    try:
        try:
            emulator.start()
        except EmulatorError as exc:
            log.error("the emulator did not start: %s", exc)
            return EXIT_EMULATOR
        return body()
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        signal.signal(signal.SIGINT, _already_stopping)
        signal.signal(signal.SIGTERM, _already_stopping)
        stop_first()
        emulator.stop()


def run(plan: DevPlan, emulator: NativeLocalStack, environ: Mapping[str, str]) -> int:
    """Start the emulator and supervisord, wait for a signal or a failure, then stop both."""
    started: list[subprocess.Popen[bytes]] = []
    stoppers: list[Callable[[], None]] = []

    def stop_started() -> None:
        # The reloader first: it must not restart programs supervisord is stopping.
        for stop in stoppers:
            stop()
        for supervisor in started:
            stop_supervisor(supervisor, SUPERVISOR_STOP_TIMEOUT)

    return _with_emulator(
        emulator, lambda: _supervise(plan, emulator, environ, started, stoppers), stop_started
    )


def _supervise(
    plan: DevPlan,
    emulator: NativeLocalStack,
    environ: Mapping[str, str],
    started: list[subprocess.Popen[bytes]],
    stoppers: list[Callable[[], None]],
) -> int:
    """Run supervisord (appended to `started`, with the reloader's stop in `stoppers`)
    until it exits or the emulator stops."""
    for directory in (plan.run_dir, plan.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    cmd = [str(plan.venv / "bin" / "supervisord"), "-n", "-c", str(plan.conf)]
    log.info("starting supervisord -c %s (program logs: %s)", plan.conf, plan.log_dir)
    supervisor = subprocess.Popen(
        cmd,
        env=plan.supervisor_env(environ),
        cwd=plan.root,
        stdin=subprocess.DEVNULL,
        # Its own session, so terminal signals reach only us and we stop it before the
        # emulator its programs depend on.
        start_new_session=True,
    )
    started.append(supervisor)
    if plan.reload:
        reloader = Reloader(plan.root, plan.socket_path, env_file_for(plan.root, environ))
        reloader.start()
        stoppers.append(reloader.stop)
        log.info(
            "watching %s for changes: a save restarts the programs that run it "
            "(turn it off with: make dev RELOAD=0)",
            ", ".join(os.path.relpath(p, plan.root) for p in reloader.paths()),
        )
    since = time.monotonic()
    while True:
        try:
            code = supervisor.wait(timeout=1)
        except subprocess.TimeoutExpired:
            if not emulator.is_running():
                log.error(
                    "the emulator stopped unexpectedly; see %s. Stopping everything.",
                    emulator.log_path,
                )
                return EXIT_EMULATOR
            continue
        if code == 0:
            log.info("supervisord exited")
            return EXIT_OK
        when = "at startup" if time.monotonic() - since < 10 else "unexpectedly"
        log.error(
            "supervisord exited %s with code %d: see its messages above and the program "
            "logs in %s, and check %s (if another `make dev` runs in this checkout, its "
            "supervisord holds the socket in %s)",
            when,
            code,
            plan.log_dir,
            plan.conf,
            plan.run_dir,
        )
        return EXIT_SUPERVISOR


def run_emulator_only(emulator: NativeLocalStack) -> int:
    """Run only the emulator until a signal (`make emulator`)."""

    def wait() -> int:
        log.info("emulator ready at %s; Ctrl-C stops it", emulator.endpoint_url)
        while emulator.is_running():
            time.sleep(0.5)
        log.error("the emulator stopped unexpectedly; see %s", emulator.log_path)
        return EXIT_EMULATOR

    return _with_emulator(emulator, wait, lambda: None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole stack natively in the foreground until Ctrl-C or SIGTERM."""
    root = _repo_root()
    parser = argparse.ArgumentParser(prog="python -m devtools.dev", description=main.__doc__)
    parser.add_argument("--conf", type=Path, default=root / "supervisord.conf")
    parser.add_argument("--state-dir", type=Path, default=root / "var" / "localstack")
    parser.add_argument("--init-dir", type=Path, default=root / "localstack" / "init")
    parser.add_argument("--emulator-venv", type=Path, default=root / ".venv-localstack")
    parser.add_argument(
        "--emulator-only", action="store_true", help="run only the emulator, configured the same"
    )
    parser.add_argument(
        "--no-reload",
        dest="reload",
        action="store_false",
        help="do not restart programs when their code changes (make dev RELOAD=0)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="dev: %(message)s", stream=sys.stderr)

    environ = dict(os.environ)
    try:
        plan = DevPlan.resolve(root, args.conf.resolve(), environ, reload=args.reload)
        plan.check(supervisor=not args.emulator_only)
    except DevConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    # Installed before anything starts, so an early signal still unwinds through `finally`.
    # SIGINT explicitly too: a shell starting us in the background leaves it ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    emulator = NativeLocalStack(
        port=plan.port,
        state_dir=args.state_dir,
        init_dir=args.init_dir,
        venv=args.emulator_venv,
        services=STACK_SERVICES,
        extra_env=plan.emulator_env(),
    )
    if args.emulator_only:
        return run_emulator_only(emulator)
    return run(plan, emulator, environ)


if __name__ == "__main__":
    sys.exit(main())
