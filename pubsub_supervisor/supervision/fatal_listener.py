"""Stop supervisord when a program goes FATAL, so the container exits and its restart
policy (or the developer) takes over, instead of running with a dead program."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from typing import TextIO

from pubsub_supervisor.supervision.protocol import parse_payload, serve

_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")

#: Set (to 1) by `make dev` when it reloads programs on save: a FATAL program is then
#: only reported, and the reloader starts it again on the next save.
DEV_RELOAD_ENV = "PUBSUB_DEV_RELOAD"


def handle_event(
    header: dict[str, str],
    payload: str,
    err: TextIO,
    terminate: Callable[[], None],
    reloading: bool = False,
) -> None:
    """On PROCESS_STATE_FATAL: say which program failed, then terminate supervisord
    (when `reloading`, under `make dev`, only say it)."""
    if header["eventname"] != "PROCESS_STATE_FATAL":
        return
    fields, _ = parse_payload(payload)
    name = _SAFE.sub("?", fields.get("processname", "unknown"))[:64]
    if reloading:
        err.write(
            f"fatal_listener: program {name} is FATAL (it kept exiting on start; its error "
            "is above); the other programs keep running, and saving a fix starts it again\n"
        )
        err.flush()
        return
    err.write(
        f"fatal_listener: program {name} is FATAL (it kept exiting on start); "
        "stopping supervisord so the container exits\n"
    )
    err.flush()
    terminate()


def main() -> None:
    """Run under supervisord as `[eventlistener:fatal_exit]`."""

    def terminate() -> None:
        os.kill(os.getppid(), signal.SIGTERM)

    reloading = os.environ.get(DEV_RELOAD_ENV) == "1"
    serve(
        sys.stdin,
        sys.stdout,
        lambda h, p: handle_event(h, p, sys.stderr, terminate, reloading),
    )


if __name__ == "__main__":
    main()
