"""Injectable time (style guide: never read time.time() deep inside logic).

Everything that decides by time takes a Clock. Production uses SystemClock; tests use FakeClock
and move through days in microseconds.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """Seconds since the Unix epoch, as an integer (formats use integer seconds)."""
        ...


class SystemClock:
    def now(self) -> int:
        return int(time.time())


class FakeClock:
    """A clock that only moves when told to. Thread-safe."""

    def __init__(self, start: int = 1_767_225_600) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> int:
        with self._lock:
            return self._now

    def advance(self, seconds: int) -> None:
        with self._lock:
            self._now += seconds

    def set(self, when: int) -> None:
        with self._lock:
            self._now = when


def iso(ts: int) -> str:
    """UTC ISO-8601 for humans and logs."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
