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


def handle_event(
    header: dict[str, str], payload: str, err: TextIO, terminate: Callable[[], None]
) -> None:
    """On PROCESS_STATE_FATAL: say which program failed, then terminate supervisord."""
    if header["eventname"] != "PROCESS_STATE_FATAL":
        return
    fields, _ = parse_payload(payload)
    name = _SAFE.sub("?", fields.get("processname", "unknown"))[:64]
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

    serve(sys.stdin, sys.stdout, lambda h, p: handle_event(h, p, sys.stderr, terminate))


if __name__ == "__main__":
    main()
