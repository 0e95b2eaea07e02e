"""Group commit (docs/protocol.md §6.1): savepoints, cancelled callers, read-only snapshots."""

from __future__ import annotations

import sqlite3

import pytest

from escrow_node import audit
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


def test_a_failing_call_is_undone_alone_and_the_batch_commits(store):
    # Given three calls queued while the writer is held (a batch takes what is queued)
    with store.lock:
        a, bad, c = store.submit(put("a")), store.submit(put("a")), store.submit(put("c"))
    # Then the duplicate fails alone and the others are committed
    assert a.result(10) == "a" and c.result(10) == "c"
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(10)
    assert keys(store) == ["a", "c"]


def test_a_cancelled_caller_is_skipped_and_the_writer_keeps_going(store):
    # Given a caller that gives up (as an asyncio task cancelled while awaiting) before the
    # writer got to it
    with store.lock:
        gone = store.submit(put("gone"))
        kept = store.submit(put("kept"))
        assert gone.cancel()
    # Then its write never happens, the other one does, and the writer thread is still alive
    assert kept.result(10) == "kept"
    assert store.batch(put("later")) == "later"
    assert keys(store) == ["kept", "later"]


def test_snapshot_sees_the_last_commit_without_the_writer_lock(store):
    store.batch(put("one"))
    # The writer lock is held (as during a group commit's fsync).
    with store.lock, store.snapshot() as conn:
        rows = conn.execute("SELECT key FROM meta").fetchall()
    assert [r[0] for r in rows] == ["one"]
    with store.snapshot() as conn, pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO meta (key, value) VALUES ('no', 'x')")


def audit_then(event: str, fail: bool = False):
    def fn(conn: sqlite3.Connection) -> str:
        h = audit.append(conn, 1, None, event, {"n": event})
        if fail:
            raise RuntimeError("after the audit entry")
        return h

    return fn


def test_the_audit_chain_head_survives_a_rolled_back_entry_inside_a_batch(store):
    # Given a batch in which a call appends an audit entry and then fails (its savepoint is
    # rolled back), between calls that succeed, and a write outside the batch afterwards
    with store.lock:
        first = store.submit(audit_then("a"))
        bad = store.submit(audit_then("gone", fail=True))
        last = store.submit(audit_then("b"))
    assert first.result(10) and last.result(10)
    with pytest.raises(RuntimeError):
        bad.result(10)
    with store.tx() as conn:
        audit.append(conn, 2, None, "c", {})
    store.batch(audit_then("d"))
    # Then the chain holds exactly the committed entries, in order, and verifies
    with store.read() as conn:
        check = audit.verify(conn)
        events = [e["event"] for e in audit.entries(conn)]
    assert check.ok and check.entries == 4
    assert events == ["a", "b", "c", "d"]
