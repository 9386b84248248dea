"""Worker subprocess for the contenders that have no command of their own.

Usage: python -m bench.drain.worker {naive,batched,sqs-workers,runtime}; settings come from the
environment (see `WorkerEnv`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench.drain.contenders import boto_loops, runtime_app, sqs_workers_app
from bench.drain.contenders.common import WorkerEnv, install_ack_hook
from bench.drain.tally import Tally

ENTRY_POINTS: dict[str, Callable[[WorkerEnv, Tally], None]] = {
    "naive": boto_loops.run_naive,
    "batched": boto_loops.run_batched,
    "sqs-workers": sqs_workers_app.run,
    "runtime": runtime_app.run,
}


def main(argv: list[str]) -> int:
    """Run the named consumer until the harness stops it."""
    if len(argv) != 1 or argv[0] not in ENTRY_POINTS:
        print(f"usage: python -m bench.drain.worker {{{','.join(ENTRY_POINTS)}}}", file=sys.stderr)
        return 2
    env = WorkerEnv.from_environ()
    tally = Tally(env.tally_path)
    install_ack_hook(tally)
    ENTRY_POINTS[argv[0]](env, tally)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
