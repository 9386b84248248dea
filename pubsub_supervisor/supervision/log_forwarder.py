"""Copy every program's output to supervisord's console, each line marked with the
program's name (as `docker compose logs` and `make dev` show it), while supervisord
keeps the per-program files that `supervisorctl tail` reads."""

from __future__ import annotations

import sys
from typing import TextIO

from pubsub_supervisor.supervision.protocol import parse_payload, serve

#: Pad names so the lines of different programs line up.
WIDTH = 17


def handle_event(header: dict[str, str], payload: str, out: TextIO) -> None:
    """On PROCESS_LOG_STDOUT/STDERR: write each line as `program | line`."""
    if not header["eventname"].startswith("PROCESS_LOG"):
        return
    fields, data = parse_payload(payload)
    name = fields.get("processname", "?")
    for line in data.splitlines():
        out.write(f"{name:<{WIDTH}}| {line}\n")
    out.flush()


def main() -> None:
    """Run under supervisord as `[eventlistener:log_forwarder]`; output goes to stderr."""
    serve(sys.stdin, sys.stdout, lambda h, p: handle_event(h, p, sys.stderr))


if __name__ == "__main__":
    main()
