"""Node storage (docs/protocol.md §6.1): read-only snapshots. The heartbeat group commit is in
test_loopcommit.py."""

from __future__ import annotations

import sqlite3

import pytest

from escrow_node.db import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "node.db")
    yield s
    s.close()


def put(key: str):
    def fn(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (key,))
        return key

    return fn


def keys(store: Store) -> list[str]:
    with store.read() as conn:
        return [r[0] for r in conn.execute("SELECT key FROM meta ORDER BY key")]


def test_snapshot_sees_the_last_commit_without_the_writer_lock(store):
    with store.tx() as conn:
        put("one")(conn)
    # The writer lock is held (as during a group commit's fsync).
    with store.lock, store.snapshot() as conn:
        rows = conn.execute("SELECT key FROM meta").fetchall()
    assert [r[0] for r in rows] == ["one"]
    with store.snapshot() as conn, pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO meta (key, value) VALUES ('no', 'x')")
