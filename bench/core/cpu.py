"""CPU time of a process tree: the workers', the stack's and the emulator's."""

from __future__ import annotations

import contextlib

import psutil


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds used so far by a process and its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total
