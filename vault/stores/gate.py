"""One upload at a time per S3 store, over every process of a deposit (format.md §6.6, §7.2).

When the uplink drops in the middle of a deposit, every upload in flight is lost and the resumed
deposit sends it again; everything acknowledged before the drop is found by the resumed deposit's
listing and not sent again. Uploads to one store therefore take turns, whichever worker process
makes them: at most one chunk per store is ever cut, so at most one is sent twice (issue 14).
Different stores upload at the same time, and a worker encrypts its next chunk while another
worker uploads, so the link stays busy; on a link slow enough to matter, one stream of
back-to-back PUTs fills it (docs/benchmarks.md, slow link).

The turn is an exclusive ``flock`` on one empty file per store in a private temp folder that
``one_upload_per_store()`` makes for the duration of a deposit and names in
``VELADOR_UPLOAD_GATE``, which the workers inherit. A lock is held for one PUT and released when
it returns, fails, or its process dies. Outside a deposit (no variable) nothing waits.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SMALL_OBJECT = 256 * 1024
"""Objects smaller than this (whole small files, compressed text) upload without waiting for the
turn. Each PUT leaves the link idle for a round trip while it waits for the answer; for a
small object that costs more than sending it again after a drop would. A drop therefore cuts at
most one object of this size or more per store, plus at most one small one per other process."""

ENV = "VELADOR_UPLOAD_GATE"
"""The folder of the per-store lock files, set by ``one_upload_per_store()`` for workers."""


class Turn:
    """The upload turn of one store for one upload: ``take()`` waits for it (the first time),
    ``release()`` gives it back. Taken late, once the request is built and signed, so that the
    turn covers only the time on the wire (vault/stores/s3.py takes it just before sending)."""

    def __init__(self, store: str) -> None:
        self._store = store
        self._fd: int | None = None

    def take(self) -> None:
        folder = os.environ.get(ENV)
        if self._fd is not None or not folder:
            return
        name = hashlib.sha256(self._store.encode()).hexdigest()[:32]  # the name shows no URL
        # A descriptor of its own per turn: flock excludes other threads of this process too.
        fd = os.open(Path(folder) / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
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
    """Make every S3 upload of this process, and of the workers it starts meanwhile, take turns
    per store (``upload_turn``)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="velador-gate-"))
    old = os.environ.get(ENV)
    os.environ[ENV] = str(folder)
    try:
        yield folder
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old
        shutil.rmtree(folder, ignore_errors=True)
