"""The heartbeat path's group commit on the event loop (escrow_node/loopcommit.py,
docs/decisions.md §12): one COMMIT for the writes in flight, a failing write undone alone, a
failed COMMIT failing its whole batch, and the event loop free while another thread holds the
store lock, and a caller that gave up skipped."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from escrow_node import audit
from escrow_node.db import Store
from escrow_node.loopcommit import LoopCommitter


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "node.db")
    yield s
    s.close()


@pytest.fixture
def committer(store):
    c = LoopCommitter(store)
    yield c
    c.close()


def put(key: str):
    def fn(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (key,))
        return key

    return fn


def committed_keys(store: Store) -> list[str]:
    """What a fresh connection sees: only committed rows."""
    conn = sqlite3.connect(store.path)
    try:
        return [r[0] for r in conn.execute("SELECT key FROM meta WHERE key LIKE 'k%' ORDER BY key")]
    finally:
        conn.close()


def test_writes_in_flight_share_one_commit_and_a_failing_one_is_undone_alone(store, committer):
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)

    async def main():
        calls = [put(f"k{i:02d}") for i in range(20)] + [put("k05")]  # the last one collides
        return await asyncio.gather(*(committer.run(c) for c in calls), return_exceptions=True)

    results = asyncio.run(main())
    store.conn.set_trace_callback(None)
    assert results[:20] == [f"k{i:02d}" for i in range(20)]
    assert isinstance(results[20], sqlite3.IntegrityError)
    assert committed_keys(store) == [f"k{i:02d}" for i in range(20)]
    # Twenty-one writes issued together: one transaction, one COMMIT.
    assert statements.count("COMMIT") == 1 and statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("ROLLBACK TO op") == 1


def test_a_failed_commit_fails_every_caller_of_the_batch_and_keeps_nothing(store, committer):
    # A deferred constraint is checked at COMMIT: the statement succeeds, the COMMIT fails.
    store.conn.executescript(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"
    )

    def orphan(conn):
        conn.execute("INSERT INTO child (pid) VALUES (42)")
        return "orphan"

    async def main():
        first = await asyncio.gather(
            committer.run(put("k1")), committer.run(orphan), return_exceptions=True
        )
        # The committer is still usable afterwards, and the lock was given back.
        after = await committer.run(put("k2"))
        return first, after

    first, after = asyncio.run(main())
    assert all(isinstance(r, sqlite3.IntegrityError) for r in first)
    assert after == "k2"
    assert committed_keys(store) == ["k2"]
    assert store.lock.acquire(blocking=False)
    store.lock.release()


def test_the_event_loop_stays_free_while_another_thread_holds_the_store_lock(store, committer):
    # Given another thread (a sweep batch) holding the store lock
    held, release = threading.Event(), threading.Event()

    def sweep():
        with store.lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=sweep)
    t.start()
    assert held.wait(10)

    async def main():
        write = asyncio.ensure_future(committer.run(put("k1")))
        # The loop keeps serving other work while the write waits for the lock...
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.005)
            ticks += 1
        assert not write.done()
        release.set()
        # ...and the write completes once the lock is free.
        return ticks, await asyncio.wait_for(write, 30)

    ticks, key = asyncio.run(main())
    t.join(10)
    assert ticks == 20 and key == "k1"
    assert committed_keys(store) == ["k1"]


def test_audit_entries_of_one_batch_chain_across_an_undone_write(store, committer):
    """The in-memory chain head is forgotten after a ROLLBACK TO, as in Store.submit."""

    def entry(case: str, fail: bool = False):
        def fn(conn):
            audit.append(conn, 1, None, case, {"n": case})
            if fail:
                raise ValueError("undo me")
            return case

        return fn

    async def main():
        return await asyncio.gather(
            committer.run(entry("a")),
            committer.run(entry("gone", fail=True)),
            committer.run(entry("b")),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    assert results[0] == "a" and results[2] == "b" and isinstance(results[1], ValueError)
    with store.tx() as conn:  # a write outside the committer chains on
        audit.append(conn, 2, None, "c", {})
    with store.read() as conn:
        check = audit.verify(conn)
        events = [e["event"] for e in audit.entries(conn)]
    assert check.ok and check.entries == 3
    assert events == ["a", "b", "c"]


def test_a_cancelled_caller_is_skipped_and_the_committer_keeps_going(store, committer):
    async def main():
        # Given two callers queued while another thread holds the store lock, one of which
        # gives up (its task is cancelled, as when a client goes away) before its turn
        with store.lock:
            gone = asyncio.ensure_future(committer.run(put("kgone")))
            kept = asyncio.ensure_future(committer.run(put("kkept")))
            await asyncio.sleep(0.05)
            gone.cancel()
        return await kept, await committer.run(put("klater")), gone.cancelled()

    # Then its write never happens, the others do
    assert asyncio.run(main()) == ("kkept", "klater", True)
    assert committed_keys(store) == ["kkept", "klater"]
