"""TEST-ONLY clock read from a file (docs/protocol.md §7, docs/guide-operator.md §9).

Integration tests move a real node process through days in milliseconds by writing an integer
(Unix seconds) into a file the node reads on every `now()`. It is enabled only by BOTH the
hidden `--test-clock-file` option and the environment variable VELADOR_NODE_TEST_CLOCK=1; the
node then logs a warning at start-up and reports `"test_clock": true` on /v1/health, so it cannot
be left on in production unnoticed.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

TEST_CLOCK_ENV = "VELADOR_NODE_TEST_CLOCK"


class FileClock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = 0
        self.now()  # fail at start-up, not in the middle of a request

    def now(self) -> int:
        try:
            text = self.path.read_text("ascii").strip()
            value = int(text)
        except (OSError, ValueError):
            # A test writer may be mid-rewrite; keep the last good value (never go back).
            if self._last:
                return self._last
            raise ConfigError(f"test clock file {self.path} is unreadable") from None
        self._last = max(self._last, value)
        return self._last


def write_clock(path: Path, when: int) -> None:
    """Atomically set a FileClock (used by tests and the benchmark)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(int(when)), "ascii")
    os.replace(tmp, path)


def test_clock_allowed() -> bool:
    return os.environ.get(TEST_CLOCK_ENV) == "1"
