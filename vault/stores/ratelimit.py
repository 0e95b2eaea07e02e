"""An upload rate limit shared by every process of one deposit (`velador deposit --limit-upload`).

A reporter's uplink is often slow and watched; a deposit that fills it stalls everything else
the reporter sends (calls, messages) and stands out. Like restic's ``--limit-upload``, the limit
is in KiB/s and covers everything the command uploads to its S3 stores, whatever the number of
parallel uploads: the deposit's worker processes and the main process all draw on one token
bucket (docs/format.md §7.1).

The bucket is a reservation ("debt") bucket: ``reserve(n)`` takes ``n`` bytes of tokens at once,
may drive the level below zero, and answers how long the caller must wait before sending, which
is how long the bucket takes to refill to zero at ``rate``. Concurrent callers queue by their
reservations, so the sum of what they send over any period T is at most ``burst + rate * T``.
An object is charged whole before its PUT and then goes at link speed: the limit holds over a
few objects (chunks are 256 KiB to 4 MiB), not within one.

Sharing between processes: the bucket's numbers (level, time of the last update, bytes taken)
live in a 24-byte file that every process opens and updates under ``flock``; the time is the
system-wide ``CLOCK_MONOTONIC``, the same clock in every process. The file holds no secret.
Worker threads use the limiter ``limited()`` installs; worker processes (VELADOR_WORKERS=processes)
find it through ``VELADOR_UPLOAD_LIMIT`` (``<bytes per second>:<path>``), which ``worker_env()``
puts in their environment. The process's own environment is never changed: deposits may overlap in
one process (the browser app's jobs), and restoring a variable in the wrong order left it naming
a deleted bucket (the same bug as the upload gate's, vault/stores/gate.py).
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "VELADOR_UPLOAD_LIMIT"
"""``<bytes per second>:<bucket file>``, set by ``limited()`` for worker processes."""

BURST_SECONDS = 0.5
"""The bucket holds this many seconds of the rate: a deposit starts with a small burst only."""

_STATE = struct.Struct("<ddq")  # level in bytes, monotonic time of the last update, bytes taken


class UploadLimiter:
    """A token bucket of ``rate`` bytes per second, in one process or shared through ``path``.

    ``clock`` and ``sleep`` are injectable so that tests check the accounting without waiting.
    """

    def __init__(
        self,
        rate: float,
        path: Path | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"upload rate must be positive, not {rate!r}")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate * BURST_SECONDS)
        self.path = path
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._level, self._last = self.burst, clock()
        self._taken = 0
        self._fd: int | None = None
        if path is not None:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.fstat(self._fd).st_size < _STATE.size:  # the first process starts it full
                    os.pwrite(self._fd, _STATE.pack(self.burst, self._last, 0), 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` of tokens; return the seconds to wait before sending them."""
        if nbytes <= 0:
            return 0.0
        with self._lock:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if self._fd is not None:
                    state = _STATE.unpack(os.pread(self._fd, _STATE.size, 0))
                    self._level, self._last, self._taken = state
                now = self._clock()
                level = min(self.burst, self._level + max(0.0, now - self._last) * self.rate)
                level -= nbytes
                self._level, self._last = level, max(now, self._last)
                self._taken += nbytes
                if self._fd is not None:
                    os.pwrite(self._fd, _STATE.pack(self._level, self._last, self._taken), 0)
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        return max(0.0, -level / self.rate)

    @property
    def taken(self) -> int:
        """Bytes reserved so far, by every process sharing the bucket."""
        with self._lock:
            if self._fd is None:
                return self._taken
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            try:
                return int(_STATE.unpack(os.pread(self._fd, _STATE.size, 0))[2])
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def acquire(self, nbytes: int) -> None:
        """Wait until ``nbytes`` may be sent (called just before an upload of that size)."""
        wait = self.reserve(nbytes)
        if wait > 0:
            self._sleep(wait)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_installed: UploadLimiter | None = None
_from_env: tuple[str, UploadLimiter] | None = None
_guard = threading.Lock()


def install(limiter: UploadLimiter | None) -> None:
    """Make ``limiter`` the one every S3 upload of this process draws on (None: no limit)."""
    global _installed
    _installed = limiter


def current() -> UploadLimiter | None:
    """The limiter of this process: the one installed, else the one ``VELADOR_UPLOAD_LIMIT``
    names (a deposit worker), else None."""
    global _from_env
    if _installed is not None:
        return _installed
    spec = os.environ.get(ENV)
    if not spec:
        return None
    with _guard:
        if _from_env is None or _from_env[0] != spec:
            rate, _, path = spec.partition(":")
            _from_env = (spec, UploadLimiter(float(rate), Path(path)))
        return _from_env[1]


def throttle(nbytes: int) -> None:
    """Wait, if an upload limit is set, until ``nbytes`` may be uploaded."""
    limiter = current()
    if limiter is not None:
        limiter.acquire(nbytes)


_active: list[UploadLimiter] = []
"""The limits of the deposits running in this process, oldest first; the newest applies."""


def worker_env() -> dict[str, str]:
    """What a worker process started now needs in its environment to share the limit."""
    limiter = _installed
    if limiter is None or limiter.path is None:
        return {}
    return {ENV: f"{limiter.rate!r}:{limiter.path}"}


@contextmanager
def limited(rate: float | None) -> Iterator[UploadLimiter | None]:
    """An upload limit of ``rate`` bytes/s for this process and the workers it starts meanwhile
    (None: no limit, and nothing is set up). Overlapping deposits: the newest limit applies
    until it ends, then the one before it that is still running."""
    if not rate:
        yield None
        return
    import shutil  # only a limited deposit pays for these imports
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="velador-limit-"))
    limiter = UploadLimiter(rate, folder / "bucket")
    with _guard:
        _active.append(limiter)
        install(limiter)
    try:
        yield limiter
    finally:
        with _guard:
            _active.remove(limiter)
            install(_active[-1] if _active else None)
        limiter.close()
        shutil.rmtree(folder, ignore_errors=True)
