"""Per-key token buckets (docs/protocol.md §2.5). In memory: a restart forgets them, which only
ever makes the node more lenient for a moment."""

from __future__ import annotations

import threading
import time

from .errors import RateLimited


class RateLimiter:
    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[bytes, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: bytes, rate: float | None = None, cost: float = 1.0) -> None:
        rate = self.rate if rate is None else rate
        burst = max(self.burst, rate)
        # Monotonic, not the case clock: rate limiting is about real load, not case time.
        t = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (burst, t))
            tokens = min(burst, tokens + (t - last) * rate)
            if tokens < cost:
                self._buckets[key] = (tokens, t)
                raise RateLimited("too many requests from this key; slow down")
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._buckets.clear()  # crude bound on memory; only resets allowances
            self._buckets[key] = (tokens - cost, t)
