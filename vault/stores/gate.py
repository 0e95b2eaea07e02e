"""One upload at a time per S3 store, over every process of a deposit (format.md §6.6, §7.2).

When the uplink drops in the middle of a deposit, every upload in flight is lost and the resumed
deposit sends it again; everything acknowledged before the drop is found by the resumed deposit's
listing and not sent again. Uploads to one store therefore take turns, whichever worker process
makes them: at most one chunk per store is ever cut, so at most one is sent twice (issue 14).
Different stores upload at the same time, and a worker encrypts its next chunk while another
worker uploads, so the link stays busy; on a link slow enough to matter, one stream of
back-to-back PUTs fills it (docs/benchmarks.md, slow link).

The turn is an exclusive ``flock`` on one empty file per store in a private temp folder that
``one_upload_per_store()`` makes while any deposit of this process runs (counted: deposits may
overlap, in the browser app or the agent). Worker threads see it through a module variable;
worker processes (VELADOR_WORKERS=processes) get it in ``VELADOR_UPLOAD_GATE`` from
``worker_env()``. The process's own environment is never changed: an earlier version set the
variable there, overlapping deposits restored it to a deleted folder, and every later upload of
the process (and of any child it started) failed. A lock is held for one PUT and released once the
server's TCP stack has acknowledged the whole body (handoff.py), or else when the PUT returns,
fails, or its process dies. Outside a deposit nothing waits, and a turn that cannot
be taken (its folder is gone) is skipped: the turn bounds what a drop re-sends, it is not needed
for correctness.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SMALL_OBJECT = 256 * 1024
"""Objects smaller than this (whole small files, compressed text) upload without waiting for the
turn. Each PUT leaves the link idle for a round trip while it waits for the answer; for a
small object that costs more than sending it again after a drop would. A drop therefore cuts at
most one object of this size or more per store, plus at most one small one per other process."""

ENV = "VELADOR_UPLOAD_GATE"
"""The folder of the per-store lock files, in the environment of worker processes only."""

_lock = threading.Lock()
_folder: Path | None = None
_users = 0


def _current() -> str | None:
    folder = _folder
    return str(folder) if folder is not None else os.environ.get(ENV)


def worker_env() -> dict[str, str]:
    """What a worker process started now needs in its environment to take turns."""
    folder = _folder
    return {ENV: str(folder)} if folder is not None else {}


class Turn:
    """The upload turn of one store for one upload: ``take()`` waits for it (the first time),
    ``release()`` gives it back. Taken late, once the request is built and signed, so that the
    turn covers only the time on the wire (vault/stores/s3.py takes it just before sending)."""

    def __init__(self, store: str) -> None:
        self._store = store
        self._fd: int | None = None

    def take(self) -> None:
        folder = _current()
        if self._fd is not None or not folder:
            return
        name = hashlib.sha256(self._store.encode()).hexdigest()[:32]  # the name shows no URL
        # A descriptor of its own per turn: flock excludes other threads of this process too.
        try:
            fd = os.open(Path(folder) / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:  # the deposit that made the folder ended: upload without a turn
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the turn back (again at the end of the block; a retry takes it anew)."""
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


@contextmanager
def upload_turn(store: str) -> Iterator[Turn]:
    """A ``Turn`` of ``store`` (its safe URL), released when the block ends; the block takes
    it when it is about to send (or at once with ``take()``)."""
    turn = Turn(store)
    try:
        yield turn
    finally:
        turn.release()


@contextmanager
def one_upload_per_store() -> Iterator[Path]:
    """Make every S3 upload of this process, and of the worker processes it starts meanwhile,
    take turns per store (``upload_turn``) until the last overlapping deposit ends."""
    global _folder, _users
    with _lock:
        if _folder is None:
            _folder = Path(tempfile.mkdtemp(prefix="velador-gate-"))
        _users += 1
        folder = _folder
    try:
        yield folder
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _folder = None
                shutil.rmtree(folder, ignore_errors=True)
