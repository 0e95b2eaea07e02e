"""Node storage: one SQLite database in WAL mode (docs/protocol.md §6).

Durability rule: every state change, its audit entry and its outbox rows are written in ONE
`BEGIN IMMEDIATE` transaction with `synchronous=FULL`, and the HTTP answer is sent only after
COMMIT returns. A crash therefore leaves either all of a transition or none of it.

All writes go through one connection guarded by a lock: SQLite serialises writers anyway, and
one writing connection avoids SQLITE_BUSY entirely. Heartbeats, the hot path, are written in
groups by loopcommit.LoopCommitter (one COMMIT, one fsync, for every heartbeat waiting).
Reads that need no consistency with a following write (a heartbeat's policy lookup, done before
its signatures are checked) use `snapshot()`: a per-thread read-only connection, which in WAL mode
sees the last committed state without waiting for the writer's lock or its fsync.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlite_utils

T = TypeVar("T")
SCHEMA_VERSION = 5

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (
    case_id        TEXT PRIMARY KEY,
    policy_hash    TEXT NOT NULL,
    policy         TEXT NOT NULL,
    reporter       TEXT NOT NULL,
    state          TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    last_beat      INTEGER NOT NULL,
    deadline       INTEGER NOT NULL,
    reminded       INTEGER NOT NULL,
    warned         INTEGER NOT NULL,
    paused_until   INTEGER,
    pending_until  INTEGER,
    destroy_at     INTEGER,
    prior          TEXT,
    editors        TEXT NOT NULL,
    released_at    INTEGER,
    release_reason TEXT,
    duress_at      INTEGER,
    next_wake      INTEGER,
    last_heartbeat TEXT,
    registered     INTEGER NOT NULL,
    updated        INTEGER NOT NULL,
    version        INTEGER NOT NULL
);
CREATE INDEX cases_wake ON cases(next_wake) WHERE next_wake IS NOT NULL;
CREATE INDEX cases_state ON cases(state);
CREATE TABLE envelopes (
    case_id   TEXT NOT NULL,
    holder    TEXT NOT NULL,
    recipient TEXT NOT NULL,
    envelope  TEXT NOT NULL,
    PRIMARY KEY (case_id, holder, recipient)
) WITHOUT ROWID;
CREATE TABLE nonces (
    signer  TEXT NOT NULL,
    nonce   TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (signer, nonce)
) WITHOUT ROWID;
CREATE INDEX nonces_expires ON nonces(expires);
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY,
    time    INTEGER NOT NULL,
    case_id TEXT,
    event   TEXT NOT NULL,
    detail  TEXT NOT NULL,
    prev    TEXT NOT NULL,
    hash    TEXT NOT NULL
);
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    key          TEXT NOT NULL UNIQUE,
    case_id      TEXT,
    channel      TEXT NOT NULL,
    target       TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created      INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    delivered    REAL,
    failed       REAL,
    last_error   TEXT
);
CREATE INDEX outbox_due ON outbox(next_attempt) WHERE delivered IS NULL AND failed IS NULL;
CREATE TABLE subscriptions (
    case_id TEXT NOT NULL,
    party   TEXT NOT NULL,
    role    TEXT NOT NULL,
    channel TEXT NOT NULL,
    target  TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (case_id, party, channel, target)
) WITHOUT ROWID;
CREATE TABLE notices (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id  TEXT NOT NULL,
    audience TEXT NOT NULL,
    notice   TEXT NOT NULL,
    created  INTEGER NOT NULL
);
CREATE INDEX notices_audience ON notices(audience, id);
"""

_SCHEMA_V2_POLICY_HISTORY = """
CREATE TABLE policy_history (
    case_id     TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    policy      TEXT NOT NULL,
    replaced    INTEGER NOT NULL,
    PRIMARY KEY (case_id, policy_hash)
) WITHOUT ROWID;
"""
"""Earlier versions of each case's policy (docs/protocol.md §4.1): a release serves them so a
recipient holding a case card from before several rotations can follow the chain of
reporter-signed replacements back to the policy it pins (docs/format.md §9.5)."""


_SCHEMA_V3_REGISTRATION = """
CREATE TABLE admitted (
    fingerprint TEXT PRIMARY KEY,
    added       INTEGER NOT NULL,
    how         TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE invitations (
    id       TEXT PRIMARY KEY,
    verifier TEXT NOT NULL,
    created  INTEGER NOT NULL,
    expires  INTEGER NOT NULL,
    used     INTEGER,
    used_by  TEXT
) WITHOUT ROWID;
"""
"""Registration control (admission.py, docs/protocol.md §4.1.1): admitted reporter keys and
invitation codes (the code's id and the SHA-256 of its secret half, never the code)."""


_SCHEMA_V4_COVERS = """
CREATE TABLE covers (
    case_id     TEXT PRIMARY KEY,
    policy_hash TEXT NOT NULL,
    state       TEXT NOT NULL,
    updated     INTEGER NOT NULL
) WITHOUT ROWID;
"""
"""Version 4: what a captor was shown under duress (escrow_node/cover.py, protocol.md §4.4)."""

_SCHEMA_V5_DRILLS = """
CREATE TABLE drills (
    case_id  TEXT NOT NULL,
    drill_id TEXT NOT NULL,
    started  INTEGER NOT NULL,
    ends     INTEGER NOT NULL,
    by       TEXT NOT NULL,
    PRIMARY KEY (case_id, drill_id)
) WITHOUT ROWID;
CREATE TABLE drill_parties (
    case_id   TEXT NOT NULL,
    drill_id  TEXT NOT NULL,
    party     TEXT NOT NULL,
    role      TEXT NOT NULL,
    challenge TEXT NOT NULL,
    digest    TEXT NOT NULL,
    notice    TEXT,
    answered  INTEGER,
    answer    TEXT,
    proofs    TEXT,
    PRIMARY KEY (case_id, drill_id, party, role)
) WITHOUT ROWID;
"""
"""Version 5: drills (escrow_node/drills.py, protocol.md §11). Apart from `cases` on purpose: a
drill is its own state machine and no drill row is ever read by the deadline engine."""

MIGRATIONS = {
    1: _SCHEMA_V1,
    2: _SCHEMA_V2_POLICY_HISTORY,
    3: _SCHEMA_V3_REGISTRATION,
    4: _SCHEMA_V4_COVERS,
    5: _SCHEMA_V5_DRILLS,
}
"""user_version N -> script that brings the schema from N-1 to N."""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        with self.lock:
            self.conn.execute("PRAGMA journal_mode=WAL")
            # FULL: each COMMIT fsyncs the WAL, so an answered request survives power loss.
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA busy_timeout=10000")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        self.db = sqlite_utils.Database(self.conn)

    def _migrate(self) -> None:
        current = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            from .errors import ConfigError

            raise ConfigError(
                f"the node database has schema version {current}, newer than this software "
                f"({SCHEMA_VERSION})",
                hint="upgrade velador, or restore the matching backup",
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in MIGRATIONS[version].split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={version}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; commits (durably) on success, rolls back on any exception."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The writing connection, under the lock: reads consistent with the next write."""
        with self.lock:
            yield self.conn

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """This thread's read-only connection: the last committed state, without the lock."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so that close() may run from the closing thread; each
            # connection is used by the thread that opened it.
            conn = sqlite3.connect(
                Path(self.path).resolve().as_uri() + "?mode=ro",
                uri=True,
                timeout=10,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        # One statement at a time in autocommit mode: each read sees the newest commit.
        yield conn

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self.lock:
            self.conn.close()
