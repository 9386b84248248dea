"""A throwaway PostgreSQL cluster (initdb + pg_ctl) for tests, benchmarks and trying it out.

Uses the server binaries of Debian's `postgresql` package (/usr/lib/postgresql/*/bin). The
cluster listens on 127.0.0.1 only, trusts local connections and lives in one folder.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from devtools.emulator import free_port, port_is_free

log = logging.getLogger(__name__)

#: The superuser role initdb creates (trust authentication: no password).
SUPERUSER = "pubsub"
#: Server settings for a cluster whose data may be lost: no fsync, room for many programs.
THROWAWAY_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
}


class PostgresError(RuntimeError):
    """The cluster could not be created or started."""


class PostgresNotInstalledError(PostgresError):
    """No PostgreSQL server binaries were found."""


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, or the one on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


class LocalPostgres:
    """A PostgreSQL server in `data_dir` on 127.0.0.1:`port`, created on first start."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        settings: Mapping[str, str] = THROWAWAY_SETTINGS,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port or free_port()
        self.bin_dir = bin_dir or find_bin_dir()
        self.settings = dict(settings)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        # initdb and postgres refuse to run as root: run them as the package's user.
        self.run_as = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the `postgres` database as the superuser."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        """SQLAlchemy URL of one database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _command(self, program: str, *args: str) -> list[str]:
        if self.bin_dir is None:
            raise PostgresNotInstalledError(
                "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on "
                "PATH): apt-get install postgresql"
            )
        command = [str(self.bin_dir / program), *args]
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            self._command(program, *args), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise PostgresError(
                f"{program} failed ({result.returncode}): {result.stderr or result.stdout}"
            )

    def _own(self, path: Path) -> None:
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(path, user.pw_uid, user.pw_gid)

    def start(self, timeout: float = 60) -> None:
        """Create the cluster if needed and start the server; returns when it accepts work."""
        if not port_is_free(self.port):
            raise PostgresError(f"port {self.port} on 127.0.0.1 is already in use")
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._own(self.data_dir)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        self.log_path.touch()
        self._own(self.log_path)
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.data_dir}",
                *(f"-c {key}={value}" for key, value in self.settings.items()),
            ]
        )
        started = time.monotonic()
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
        )
        log.info(
            "PostgreSQL ready on 127.0.0.1:%d in %.1f s", self.port, time.monotonic() - started
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended)."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        with contextlib.suppress(PostgresError):
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def throwaway(port: int | None = None) -> Iterator[LocalPostgres]:
    """A cluster in a fresh temporary folder, removed afterwards."""
    # Not under pytest's or the caller's private temp folder: the server's user must reach it.
    root = Path(tempfile.mkdtemp(prefix="pubsub-pg-"))
    root.chmod(0o755)
    server = LocalPostgres(root / "data", port=port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m devtools.postgres`: run a throwaway server until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.postgres", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with throwaway(args.port or None) as server:
            log.info("DATABASE_URL=%s", server.url)
            while not stopping:
                time.sleep(0.5)
    except PostgresError as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
