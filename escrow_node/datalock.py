"""One node process per data folder (docs/guide-operator.md, "One process per folder").

Two `velador node serve` on the same folder would run two deadline engines and two outboxes on
one database: double notices at best. `node serve` (and `node restore`, which replaces the
database) therefore take an exclusive flock on DIR/node.lock before they open the database, and
hold it until the process ends; the kernel drops it when the process dies, even by SIGKILL, so
a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

LOCK_FILE = "node.lock"
_held: list[int] = []
"""File descriptors of the locks this process holds (kept open, so kept locked)."""


def lock_data_dir(data_dir: Path, what: str = "serving") -> int:
    """Take DIR's lock for the rest of this process, or raise ConfigError at once."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(
            f"another velador node process is already using the data folder {data_dir}",
            hint="stop that node first (for example 'systemctl stop velador-node'), "
            "or give this one another --data folder",
        ) from None
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {what}\n".encode())
    _held.append(fd)
    return fd


@contextlib.contextmanager
def data_dir_locked(data_dir: Path, what: str) -> Iterator[None]:
    """The same lock for a short command (`node restore`), released when it is done."""
    fd = lock_data_dir(data_dir, what)
    try:
        yield
    finally:
        _held.remove(fd)
        os.close(fd)
