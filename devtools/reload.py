"""`make dev`'s reload: watch the source tree and restart, through supervisord, only the
programs whose code changed (the web by a graceful HUP), and bring back broken ones."""

from __future__ import annotations

import logging
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from pubsub_supervisor import registry

log = logging.getLogger("devtools.dev")

#: The web's programs (gunicorn, and its results consumer and outbox relay).
WEB = "web"
WEB_WORKER = "web_worker"
SERVICE_PROGRAMS: tuple[str, ...] = tuple(spec.program for spec in registry.SERVICES)
ALL_PROGRAMS: tuple[str, ...] = (WEB, WEB_WORKER, *SERVICE_PROGRAMS)

#: The folders a program's code lives in (relative to the project root).
WATCHED = ("pubsub_supervisor", "services", "web")
#: Under web/: read from disk on every request (templates auto-reload in this mode).
NO_RESTART = ("templates", "static")
#: States in which supervisord would not start the program again by itself.
DOWN_STATES = frozenset({"FATAL", "EXITED"})
#: States from which stopProcess works (supervisor's RUNNING_STATES).
STOPPABLE_STATES = frozenset({"RUNNING", "STARTING", "BACKOFF"})
#: Longest wait for programs to drain on a restart (above every stopwaitsecs).
STOP_TIMEOUT = 20.0


def programs_for(rel: PurePosixPath, env_file: str | None = None) -> frozenset[str]:
    """The programs that run the code at `rel` (a path relative to the project root)."""
    parts = rel.parts
    if not parts or "__pycache__" in parts or rel.suffix in (".pyc", ".pyo"):
        return frozenset()
    if env_file is not None and str(rel) == env_file:
        return frozenset(ALL_PROGRAMS)
    top = parts[0]
    if top == "web":
        if len(parts) > 2 and parts[1] in NO_RESTART:
            return frozenset()
        return frozenset({WEB, WEB_WORKER})
    if top == "services":
        if len(parts) > 2 and parts[1] in registry.names():
            return frozenset({registry.get(parts[1]).program})
        # services/order_service.py, services/__main__.py: what every service runs; the
        # web reads results through the same foundation.
        return frozenset(ALL_PROGRAMS)
    if top == "pubsub_supervisor":
        return frozenset(ALL_PROGRAMS)
    return frozenset()


@dataclass
class Decision:
    """What to do after a batch of changes: which programs, and why (the first file)."""

    hup: dict[str, str] = field(default_factory=dict)
    restart: dict[str, str] = field(default_factory=dict)
    start: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.hup or self.restart or self.start)


def decide(
    changed: Iterable[str], states: Mapping[str, str], env_file: str | None = None
) -> Decision:
    """Turn `changed` paths (relative, '/'-separated) and program states into actions.

    A running web is sent HUP (gunicorn replaces its workers, no request is dropped);
    a running program is restarted (it drains as on any stop); a program that is down
    (FATAL, EXITED: a broken save) is started again on any save that touches a program.
    """
    reasons: dict[str, str] = {}
    for path in sorted(changed):
        for program in sorted(programs_for(PurePosixPath(path), env_file)):
            reasons.setdefault(program, path)
    decision = Decision()
    if not reasons:
        return decision
    for program, state in sorted(states.items()):
        if program not in ALL_PROGRAMS:
            continue
        reason = reasons.get(program)
        if state in DOWN_STATES:
            decision.start[program] = (
                f"{reason} changed" if reason else f"it was {state} and a file was saved"
            )
        elif reason is None or state == "STOPPED":
            # STOPPED: someone stopped it on purpose (supervisorctl stop); leave it.
            continue
        elif program == WEB and state == "RUNNING":
            decision.hup[program] = f"{reason} changed"
        elif state in STOPPABLE_STATES:
            decision.restart[program] = f"{reason} changed"
    return decision


class Supervisor(Protocol):
    """The part of supervisord's XML-RPC interface the reloader uses."""

    def getAllProcessInfo(self) -> list[dict[str, Any]]: ...
    def stopProcess(self, name: str, wait: bool) -> bool: ...
    def startProcess(self, name: str, wait: bool) -> bool: ...
    def signalProcess(self, name: str, signal: str) -> bool: ...


def connect(socket_path: Path) -> Supervisor:
    """supervisord's XML-RPC interface over its unix socket (what supervisorctl uses)."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{socket_path}")
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    # The proxy's methods are dynamic; the Protocol names the ones used.
    rpc: Supervisor = proxy.supervisor  # type: ignore[assignment]
    return rpc


def states(rpc: Supervisor) -> dict[str, str]:
    """Program name -> state name."""
    return {info["name"]: info["statename"] for info in rpc.getAllProcessInfo()}


def apply(decision: Decision, rpc: Supervisor, clock: Callable[[], float] = time.monotonic) -> None:
    """Carry the decision out through supervisord, saying on the console what and why."""
    for program, why in decision.hup.items():
        log.info("reload: %s reloads its workers (HUP): %s", program, why)
        rpc.signalProcess(program, "HUP")
    # Stop them all first, then start them: they drain side by side.
    for program, why in decision.restart.items():
        log.info("reload: restarting %s: %s", program, why)
        rpc.stopProcess(program, False)
    deadline = clock() + STOP_TIMEOUT
    waiting = set(decision.restart)
    while waiting and clock() < deadline:
        current = states(rpc)
        waiting = {p for p in waiting if current.get(p) in STOPPABLE_STATES | {"STOPPING"}}
        if waiting:
            time.sleep(0.05)
    for program, why in decision.start.items():
        log.info("reload: starting %s: %s", program, why)
    for program in (*decision.restart, *decision.start):
        try:
            rpc.startProcess(program, False)
        except xmlrpc.client.Fault as fault:
            log.error("reload: %s did not start: %s", program, fault.faultString)


class Reloader:
    """Watches the source tree on a thread and restarts what each save touched."""

    def __init__(self, root: Path, socket_path: Path, env_file: Path | None) -> None:
        self.root = root
        self.socket_path = socket_path
        self.env_file = env_file
        self.env_rel = self.relative(str(env_file)) if env_file else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reload", daemon=True)

    def paths(self) -> list[Path]:
        """What to watch: the programs' packages and the .env file they read."""
        paths = [self.root / name for name in WATCHED if (self.root / name).is_dir()]
        if self.env_file is not None and self.env_file.is_file():
            paths.append(self.env_file)
        return paths

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before supervisord stops, so nothing restarts meanwhile)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def relative(self, path: str) -> str:
        """The path relative to the root, '/'-separated (absolute when outside it)."""
        resolved = Path(path).resolve()
        try:
            return resolved.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return resolved.as_posix()

    def handle(self, changed: Iterable[str], rpc: Supervisor) -> None:
        """React to one batch of changed (absolute) paths."""
        rel = {self.relative(p) for p in changed}
        if "supervisord.conf" in rel:
            log.warning("reload: supervisord.conf changed; stop and start `make dev` to apply it")
        decision = decide(rel, states(rpc), self.env_rel)
        if decision:
            apply(decision, rpc)

    def _run(self) -> None:
        import watchfiles

        # Its own "N changes detected" lines: the reloader says what it does instead.
        logging.getLogger("watchfiles").setLevel(logging.WARNING)

        rpc = connect(self.socket_path)
        for batch in watchfiles.watch(
            *self.paths(), stop_event=self._stop, raise_interrupt=False, step=50
        ):
            try:
                self.handle({path for _change, path in batch}, rpc)
            except (OSError, xmlrpc.client.Error) as exc:
                # supervisord is starting or stopping; the next save tries again.
                log.warning("reload: supervisord did not answer (%s); save again to retry", exc)
