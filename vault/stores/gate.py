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

ENV = "VELADOR_UPLOAD_GATE"
"""The folder of the per-store lock files, set by ``one_upload_per_store()`` for workers."""


@contextmanager
def upload_turn(store: str) -> Iterator[None]:
    """Wait for, and hold while the block runs, the upload turn of ``store`` (its safe URL)."""
    folder = os.environ.get(ENV)
    if not folder:
        yield
        return
    name = hashlib.sha256(store.encode()).hexdigest()[:32]  # the file name reveals no URL
    # A descriptor of its own per turn: flock excludes other threads of this process too.
    fd = os.open(Path(folder) / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


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
