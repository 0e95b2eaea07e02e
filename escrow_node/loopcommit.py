"""Group commit driven by the event loop, for the heartbeat path (docs/decisions.md §12).

The earlier group commit (Store.submit, removed) ran every write of a batch in a writer thread.
On the heartbeat path that thread, the event loop and the verification threads handed the GIL
to each other at every SQLite statement and every signature: measured, the hand-offs cost more
CPU than the work (1.67 ms per heartbeat against about 0.7 ms for the same steps in one
thread). Here the writes
of a batch run on the event loop itself, one after the other, and only what blocks goes to one
helper thread: taking the store lock with BEGIN IMMEDIATE (another thread may hold the lock for
a sweep batch) and COMMIT (the fsync). Writes that arrive while a batch commits form the next
batch, so one fsync still covers every heartbeat in flight.

The guarantees: each write runs in its own SAVEPOINT, so a write that
raises is undone alone and its caller gets the exception; the others get their results only
after COMMIT returned; if COMMIT (or BEGIN) fails, every caller of that batch gets the error and
nothing of the batch is kept. Code on the event loop thread must never take `Store.lock`
itself (the helper thread holds it while the loop writes).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import audit
from .db import Store

T = TypeVar("T")
MAX_BATCH = 128
"""Writes per transaction at most: bounds how long one batch keeps the event loop busy."""


class LoopCommitter:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="db-commit")
        self._holding = False
        """The helper thread holds the store lock (only that thread reads or sets this)."""

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in the next batch; its result once the batch is durable."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, fut))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await fut

    def close(self) -> None:
        """Stop the helper thread. Called at shutdown, once no request is in flight: every
        caller awaits its own write, so no batch is then left half-way."""
        self._thread.shutdown(wait=True)

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._in_thread(self._begin)
                items = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    done = self._write(items)
                except Exception as exc:  # a SAVEPOINT itself failed (disk, corruption)
                    await self._in_thread(self._rollback)
                    _fail((fut for _, fut in items), exc)
                    continue
                try:
                    await self._in_thread(self._commit)
                except Exception as exc:  # the whole batch is lost: nobody gets a result
                    _fail((fut for fut, _, _ in done), exc)
                    continue
                for fut, res, err in done:
                    if fut.done():  # its caller gave up (cancelled): nothing to hand out
                        continue
                    if err is not None:
                        fut.set_exception(err)
                    else:
                        fut.set_result(res)
        except Exception as exc:  # BEGIN failed: fail what is waiting, never leave it hanging
            _fail((fut for _, fut in self._pending), exc)
            self._pending.clear()
        finally:
            self._task = None

    async def _in_thread(self, fn: Callable[[], None]) -> None:
        """Run a step in the helper thread. Shielded: a transaction the helper opened must end
        in COMMIT or ROLLBACK even if this task is cancelled (only at shutdown)."""
        step = asyncio.get_running_loop().run_in_executor(self._thread, fn)
        try:
            await asyncio.shield(step)
        except asyncio.CancelledError:
            self._thread.submit(self._rollback)  # runs after `step`: one helper thread
            raise

    def _begin(self) -> None:
        """Helper thread: the store lock, then the write transaction."""
        self._store.lock.acquire()
        try:
            self._store.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._store.lock.release()
            raise
        self._holding = True

    def _commit(self) -> None:
        """Helper thread: COMMIT (ROLLBACK if it fails), then the lock goes back."""
        try:
            self._store.conn.execute("COMMIT")
        finally:
            self._rollback()

    def _rollback(self) -> None:
        """Helper thread: end whatever transaction is still open and give the lock back."""
        if not self._holding:
            return
        try:
            if self._store.conn.in_transaction:
                self._store.conn.execute("ROLLBACK")
        finally:
            self._holding = False
            self._store.lock.release()

    def _write(
        self, items: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """Event loop: each write in its own savepoint."""
        conn = self._store.conn
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        with audit.head_kept(conn):
            for fn, fut in items:
                if fut.done():  # cancelled before its turn: never run it
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    res = fn(conn)
                except Exception as exc:
                    audit.forget_head(conn)
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    done.append((fut, None, exc))
                else:
                    conn.execute("RELEASE op")
                    done.append((fut, res, None))
        return done


def _fail(futures: Any, exc: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(exc)
