"""Prometheus metrics (docs/guide-operator.md §8), exposed with `prometheus_client`.

Off by default. When `[metrics] enabled = true`, they are served on their own listener,
`[metrics] listen` (default 127.0.0.1:9464), which MUST be a loopback address: never on the
node's API port, so a reverse proxy or an onion service that publishes the API cannot publish
them (docs/threat-model.md, "Finding 3").

Counters live in memory (reset on restart, as Prometheus expects); gauges are read from the
database at scrape time. Nothing sealed and no case id is ever exported, and no metric moves
differently for a duress check-in than for a normal one: deliveries of silent-alarm notices
(notices.SILENT_EVENTS) are left out of the notification and outbox figures
(docs/protocol.md §8.6).
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from .engine import STATES
from .errors import ConfigError
from .notices import SILENT_EVENTS

log = logging.getLogger("velador.node")
DEFAULT_LISTEN = "127.0.0.1:9464"

# name -> (kind, help, label names). Names are the exported ones, kept from the first release.
SPEC: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "velador_node_heartbeats_total": ("counter", "Heartbeats accepted (direct and gossip).", ()),
    "velador_node_releases_total": ("counter", "Cases released since start.", ()),
    "velador_node_http_requests_total": (
        "counter",
        "HTTP requests answered, by status class.",
        ("code",),
    ),
    "velador_node_notifications_total": (
        "counter",
        "Notification deliveries, by channel and result.",
        ("channel", "result"),
    ),
    "velador_node_sweeps_total": ("counter", "Engine sweeps run.", ()),
    "velador_node_verify_fallbacks_total": (
        "counter",
        "Heartbeats checked in the serving process because no verification worker could.",
        (),
    ),
    "velador_node_sweep_seconds": ("gauge", "Duration of the last sweep.", ()),
    "velador_node_sweep_errors_total": (
        "counter",
        "Cases a sweep could not advance (logged by case id; retried by the next sweep).",
        (),
    ),
    "velador_node_clock_alarms_total": (
        "counter",
        "Releases due by this node's clock while it was ahead of most of the case's peers.",
        (),
    ),
    "velador_node_clock_alarm": (
        "gauge",
        "Cases whose release is held now because this node's clock is ahead of its peers.",
        (),
    ),
}
DB_GAUGES = {
    "velador_node_cases": "Cases by state.",
    "velador_node_outbox_pending": "Notifications and gossip messages not yet delivered.",
    "velador_node_outbox_failed": "Deliveries given up after all retries.",
    "velador_node_next_wake_seconds": "Seconds until the next engine wake-up (-1: none).",
}

_SILENT = ",".join("'" + e + "'" for e in sorted(SILENT_EVENTS))
# The event of a notice delivery; NULL for gossip rows (their payload is a heartbeat).
_NOT_SILENT = f"coalesce(json_extract(payload, '$.notice.body.event'), '') NOT IN ({_SILENT})"


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` with a loopback HOST (127.0.0.0/8, ::1 in brackets, or localhost)."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    bad = ConfigError(
        f"node.toml: [metrics] listen must be a loopback HOST:PORT, not {text!r}",
        hint=f"use {DEFAULT_LISTEN}; scrape from the same machine or through an SSH tunnel",
    )
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise bad
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise bad
        except ValueError:
            raise bad from None
    return host, int(port_text)


class _DbCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(
        self, read: Callable[[], AbstractContextManager[sqlite3.Connection]], now: Callable[[], int]
    ) -> None:
        self._read = read
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._read() as conn:
            yield from db_gauges(conn, self._now())

    def describe(self) -> list[Any]:
        return []


def db_gauges(conn: sqlite3.Connection, now: int) -> Iterator[GaugeMetricFamily]:
    cases = GaugeMetricFamily(
        "velador_node_cases", DB_GAUGES["velador_node_cases"], labels=["state"]
    )
    counts = dict.fromkeys(STATES, 0)
    for state, n in conn.execute("SELECT state, count(*) FROM cases GROUP BY state"):
        counts[state] = n
    for state, n in counts.items():
        cases.add_metric([state], n)
    yield cases
    # Column and event names are constants of this module; nothing here comes from a request.
    pending = conn.execute(
        "SELECT count(*) FROM outbox WHERE delivered IS NULL AND failed IS NULL"  # noqa: S608
        f" AND {_NOT_SILENT}"
    ).fetchone()[0]
    failed = conn.execute(
        f"SELECT count(*) FROM outbox WHERE failed IS NOT NULL AND {_NOT_SILENT}"  # noqa: S608
    ).fetchone()[0]
    wake = conn.execute("SELECT min(next_wake) FROM cases WHERE next_wake IS NOT NULL").fetchone()[
        0
    ]
    for name, value in (
        ("velador_node_outbox_pending", pending),
        ("velador_node_outbox_failed", failed),
        ("velador_node_next_wake_seconds", -1 if wake is None else max(0, wake - now)),
    ):
        yield GaugeMetricFamily(name, DB_GAUGES[name], value=value)


class Metrics:
    """The node's counters, in a registry of its own (several nodes may share a process in
    tests; the global prometheus_client registry would mix them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        for name, (kind, text, labels) in SPEC.items():
            cls = Counter if kind == "counter" else Gauge
            # prometheus_client adds the _total suffix of a counter itself.
            base = name.removesuffix("_total") if kind == "counter" else name
            self._metrics[name] = cls(base, text, labels, registry=self.registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _child(self, name: str, labels: dict[str, str]) -> Any:
        m = self._metrics[name]
        return m.labels(**labels) if labels else m

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._child(name, labels).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        self._child(name, labels).set(value)

    def get(self, name: str, **labels: str) -> float:
        """The current value (tests and `velador node status`)."""
        sample = name if SPEC[name][0] == "gauge" or name.endswith("_total") else name + "_total"
        value = self.registry.get_sample_value(sample, labels or None)
        return 0.0 if value is None else value

    def attach_db(
        self, read: Callable[[], AbstractContextManager[sqlite3.Connection]], now: Callable[[], int]
    ) -> None:
        """Add the database gauges (once, when the node's store exists)."""
        self.registry.register(_DbCollector(read, now))

    def render(self) -> str:
        """The text exposition of every metric, as a scrape would return it."""
        return generate_latest(self.registry).decode()

    def serve(self, listen: str) -> tuple[str, int]:
        """Start the loopback-only metrics listener; returns the address it is bound to."""
        host, port = parse_listen(listen)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound = self._server.server_address
        log.info("metrics on http://%s:%d/metrics (loopback only)", bound[0], bound[1])
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
