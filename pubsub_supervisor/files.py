"""Files only their owner may read: the stores' SQLite files and the web's secret key.

They hold customers' addresses and the key that signs the web's sessions, so neither the
files nor the folders we create for them are readable by other users of the host.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

#: rw for the owner only.
FILE_MODE = 0o600
#: rwx for the owner only.
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create the folder (and its parents) if missing; the one we create is owner-only."""
    with contextlib.suppress(FileExistsError):
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkdir applies the umask to its mode: ask for 0700, which no umask loosens.
        path.mkdir(mode=DIR_MODE)


def private_file(path: Path) -> None:
    """Create the file empty with mode 0600 if missing; tighten it if we own it."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    info = path.stat()
    # A file someone else owns (a shared volume) is theirs to set; ours we tighten.
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & ~FILE_MODE:
        path.chmod(FILE_MODE)
