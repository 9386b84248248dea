"""Shared pieces of the integration tests that start a real emulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EMULATOR_VENV = REPO / ".venv-localstack"


def require_emulator_venv() -> None:
    """Skip on a laptop without the LocalStack venv; fail in CI, where it must exist."""
    if (EMULATOR_VENV / "bin" / "python").exists():
        return
    message = f"{EMULATOR_VENV} is missing: run: make emulator-venv"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def processes_rooted_at(state_dir: Path) -> list[int]:
    """Pids of live processes whose environment names state_dir as LocalStack's FILESYSTEM_ROOT."""
    needle = f"FILESYSTEM_ROOT={state_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(proc.name))
    return found


def pid_alive(pid: int) -> bool:
    """Tell whether a process exists (and is not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_file(path: Path, timeout: float) -> str:
    """Return a file's text once it exists and is non-empty; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return path.read_text()
        time.sleep(0.2)
    pytest.fail(f"{path} did not appear within {timeout:.0f} s")


def tracked_files() -> list[str]:
    """The project's files under git (what a fresh clone has)."""
    result = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    return [p for p in result.stdout.splitlines() if (REPO / p).is_file()]


def copy_project(home: Path) -> Path:
    """Copy the tracked files into `home` (a project a test may edit); returns `home`."""
    for name in tracked_files():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, home / name)
    return home
