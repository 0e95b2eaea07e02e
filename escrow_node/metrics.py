"""Prometheus text exposition (docs/guide-operator.md §8), without a client library.

Counters live in memory (reset on restart, as Prometheus expects); gauges are read from the
database at scrape time. Nothing sealed and no case id is ever exported.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from .engine import STATES

HELP = {
    "velador_node_heartbeats_total": ("counter", "Heartbeats accepted (direct and gossip)."),
    "velador_node_releases_total": ("counter", "Cases released since start."),
    "velador_node_http_requests_total": ("counter", "HTTP requests answered, by status class."),
    "velador_node_notifications_total": (
        "counter",
        "Notification deliveries, by channel and result.",
    ),
    "velador_node_sweeps_total": ("counter", "Engine sweeps run."),
    "velador_node_verify_fallbacks_total": (
        "counter",
        "Heartbeats checked in the serving process because no verification worker could.",
    ),
    "velador_node_sweep_seconds": ("gauge", "Duration of the last sweep."),
    "velador_node_sweep_errors_total": (
        "counter",
        "Cases a sweep could not advance (logged by case id; retried by the next sweep).",
    ),
    "velador_node_cases": ("gauge", "Cases by state."),
    "velador_node_clock_alarms_total": (
        "counter",
        "Releases due by this node's clock while it was ahead of most of the case's peers.",
    ),
    "velador_node_clock_alarm": (
        "gauge",
        "Cases whose release is held now because this node's clock is ahead of its peers.",
    ),
    "velador_node_outbox_pending": (
        "gauge",
        "Notifications and gossip messages not yet delivered.",
    ),
    "velador_node_outbox_failed": ("gauge", "Deliveries given up after all retries."),
    "velador_node_next_wake_seconds": (
        "gauge",
        "Seconds until the next engine wake-up (-1: none).",
    ),
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] = value

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self, conn, now: int) -> str:  # type: ignore[no-untyped-def]
        counts = dict.fromkeys(STATES, 0)
        for state, n in conn.execute("SELECT state, count(*) FROM cases GROUP BY state"):
            counts[state] = n
        for state, n in counts.items():
            self.set("velador_node_cases", n, state=state)
        pending = conn.execute(
            "SELECT count(*) FROM outbox WHERE delivered IS NULL AND failed IS NULL"
        ).fetchone()[0]
        failed = conn.execute("SELECT count(*) FROM outbox WHERE failed IS NOT NULL").fetchone()[0]
        wake = conn.execute(
            "SELECT min(next_wake) FROM cases WHERE next_wake IS NOT NULL"
        ).fetchone()[0]
        self.set("velador_node_outbox_pending", pending)
        self.set("velador_node_outbox_failed", failed)
        self.set("velador_node_next_wake_seconds", -1 if wake is None else max(0, wake - now))
        lines: list[str] = []
        with self._lock:
            items = sorted(self._values.items())
        done: set[str] = set()
        for (name, labels), value in items:
            if name not in done:
                kind, text = HELP.get(name, ("untyped", name))
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
                done.add(name)
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            value_text = repr(float(value)) if value != int(value) else str(int(value))
            lines.append(
                f"{name}{{{label_text}}} {value_text}" if labels else f"{name} {value_text}"
            )
        return "\n".join(lines) + "\n"
