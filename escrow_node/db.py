"""Node storage: one SQLite database in WAL mode (docs/protocol.md §6).

Durability rule: every state change, its audit entry and its outbox rows are written in ONE
`BEGIN IMMEDIATE` transaction with `synchronous=FULL`, and the HTTP answer is sent only after
COMMIT returns. A crash therefore leaves either all of a transition or none of it.

All writes go through one connection guarded by a lock: SQLite serialises writers anyway, and
one writing connection avoids SQLITE_BUSY entirely. Heartbeats, the hot path, are written by one
writer thread in groups (`submit`/`batch`: one COMMIT, one fsync, for every heartbeat waiting).
Reads that need no consistency with a following write (a heartbeat's policy lookup, done before
its signatures are checked) use `snapshot()`: a per-thread read-only connection, which in WAL mode
sees the last committed state without waiting for the writer's lock or its fsync.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from . import audit

T = TypeVar("T")
SCHEMA_VERSION = 1

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

MIGRATIONS = {1: _SCHEMA_V1}
"""user_version N -> script that brings the schema from N-1 to N."""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._batch_lock = threading.Lock()
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

    def batch(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a transaction shared with other concurrent callers (group commit).

        Each call runs inside its own SAVEPOINT, so an exception undoes only that call; the
        batch is committed (one fsync) before any caller gets its result. Used on the hot path
        (heartbeats) where one fsync per request would cap throughput.
        """
        return self.submit(fn).result()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Like `batch`, without waiting: the future is resolved only after COMMIT returned.

        An asyncio caller awaits it with `asyncio.wrap_future`, so no thread is held while the
        batch commits and a batch can hold every request in flight, not one per worker thread.
        """
        with self._batch_lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, daemon=True, name="db-writer"
                )
                self._writer.start()
        fut: Future[T] = Future()
        self._queue.put((fn, fut))
        return fut

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = [first]
            while len(items) < 128:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                items.append(nxt)
            done: list[tuple[Future[Any], Any, BaseException | None]] = []
            try:
                with self.lock, audit.head_kept(self.conn):
                    self.conn.execute("BEGIN IMMEDIATE")
                    try:
                        for fn, fut in items:
                            # A caller that gave up (its asyncio task was cancelled) is skipped;
                            # once running, a future can no longer be cancelled, so setting its
                            # result below cannot fail.
                            if not fut.set_running_or_notify_cancel():
                                continue
                            self.conn.execute("SAVEPOINT op")
                            try:
                                res = fn(self.conn)
                            except BaseException as exc:
                                audit.forget_head(self.conn)
                                self.conn.execute("ROLLBACK TO op")
                                self.conn.execute("RELEASE op")
                                done.append((fut, None, exc))
                            else:
                                self.conn.execute("RELEASE op")
                                done.append((fut, res, None))
                    except BaseException:
                        self.conn.execute("ROLLBACK")
                        raise
                    self.conn.execute("COMMIT")
            except BaseException as exc:  # the whole batch failed: nobody gets a result
                for _, fut in items:
                    if not fut.done():
                        if not fut.running():
                            fut.set_running_or_notify_cancel()
                        if not fut.cancelled():
                            fut.set_exception(exc)
                continue
            for fut, res, err in done:
                if err is not None:
                    fut.set_exception(err)
                else:
                    fut.set_result(res)

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
            with self._batch_lock:
                self._readers.append(conn)
        # One statement at a time in autocommit mode: each read sees the newest commit.
        yield conn

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(10)
        with self._batch_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self.lock:
            self.conn.close()
