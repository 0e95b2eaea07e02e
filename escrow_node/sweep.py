"""The engine driver (docs/protocol.md §5.3): advance every case whose next wake-up is due.

Cases are advanced in batches, one transaction per batch, and each case inside its own SAVEPOINT:
a case that cannot be advanced (a corrupted row, a refused write, a bug) is rolled back alone,
logged by case id and skipped, and the rest of the batch is still committed. The skipped case
keeps its `next_wake` in the past, so the next periodic sweep retries it (the exact-time job
does not: see EngineScheduler.rearm). One bad case must never hold up another case's release.

A case whose release is due by time (a deadline past its grace, or the end of an editor
objection window) first goes through the pre-release peer sync (gossip.newest_from_peers) and
the clock check (clockcheck.py) outside any transaction, then is advanced again with
`synced=True` in its own transaction, which re-reads the state: a heartbeat that arrived
meanwhile wins, and a release the clock check refused is not written (ClockAlarm).

The sync talks to peers, which may be hostile (issue 11, finding 1), so it never runs inside the
sweep: the sweep hands each such case to `PeerSync`, a fixed pool of threads, and returns. The
scheduler's sweep lock is therefore never held while waiting on the network, the start-up sweep
does not hold up serving, each sync is bounded (gossip.CASE_SYNC_TIMEOUTS x peer_timeout), a
case already being synced is not queued twice, and a peer that ran out of time is skipped by
the other syncs for a while (gossip.SlowPeers). Without a `PeerSync` (tests, benchmarks) the
sweep makes a private one and waits for it.

Batches are read with a keyset cursor on (next_wake, rowid), which the `cases_wake` index
serves in order, so a sweep over N due cases reads each index entry once.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from vault.errors import VeladorError

from . import clockcheck, engine, gossip
from .engine import Effect
from .errors import ClockAlarm
from .operations import apply_heartbeat, verify_heartbeat
from .service import NodeService, state_of

log = logging.getLogger("velador.node.sweep")
BATCH = 256
SYNC_WORKERS = 16
"""Pre-release syncs in flight at once; each ends within its bound, so threads never pile up."""


@dataclass(frozen=True)
class SweepResult:
    advanced: int
    synced: int
    seconds: float
    now: int = 0
    """The case time the sweep ran at."""
    failed: tuple[str, ...] = field(default=())
    """Ids of the cases that could not be advanced (logged; retried by the next sweep)."""
    deferred: int = 0
    """Cases handed to the PeerSync pool (their sync runs after the sweep returns)."""


def _log_failure(case_id: str, step: str, exc: Exception) -> None:
    # Error texts of this code base carry no secret (ids, states, counts only); a traceback is
    # logged only for errors that are not ours, since those are bugs to report.
    if isinstance(exc, VeladorError):
        log.error("case %s: %s failed, retried next sweep: %s", case_id, step, exc)
    else:
        log.exception("case %s: %s failed, retried next sweep", case_id, step)


def sweep(svc: NodeService, now: int | None = None, syncer: PeerSync | None = None) -> SweepResult:
    """Advance every due case. With `syncer`, pre-release syncs are queued there and the sweep
    returns at once; without, they run on a private pool and the sweep waits for them."""
    t0 = time.perf_counter()
    now = svc.clock.now() if now is None else now
    seen: set[str] = set()
    failed: list[str] = []
    advanced = 0
    to_sync: list[str] = []
    all_effects: list[Effect] = []
    cursor: tuple[int, int] = (-(2**62), 0)
    while True:
        with svc.store.read() as conn:
            rows = conn.execute(
                "SELECT next_wake, rowid, case_id FROM cases INDEXED BY cases_wake"
                " WHERE next_wake IS NOT NULL AND next_wake <= ? AND (next_wake, rowid) > (?, ?)"
                " ORDER BY next_wake, rowid LIMIT ?",
                (now, *cursor, BATCH),
            ).fetchall()
        if not rows:
            break
        cursor = (rows[-1][0], rows[-1][1])
        # A case advanced earlier in this sweep may show up again further on (its new wake-up
        # is still due, e.g. waiting for the peer sync): it was handled already.
        ids = [r[2] for r in rows if r[2] not in seen]
        seen.update(ids)
        if not ids:
            continue
        with svc.store.tx() as conn:
            for case_id in ids:
                conn.execute("SAVEPOINT sweep_case")
                try:
                    changed, effects, sync = _advance_one(svc, conn, case_id, now)
                except Exception as exc:
                    conn.execute("ROLLBACK TO sweep_case")
                    conn.execute("RELEASE sweep_case")
                    failed.append(case_id)
                    _log_failure(case_id, "advancing", exc)
                    continue
                conn.execute("RELEASE sweep_case")
                if sync:
                    to_sync.append(case_id)
                if changed:
                    advanced += 1
                    all_effects += effects
    if advanced or all_effects:
        svc.after_commit(all_effects, queued=True)
    synced = deferred = 0
    counted = len(failed)  # PeerSync._run counts the failures of the syncs themselves
    if syncer is not None:
        deferred = sum(syncer.submit(case_id, now) is not None for case_id in to_sync)
    elif to_sync:
        own = PeerSync(svc)
        try:
            futures = [(c, own.submit(c, now)) for c in to_sync]
            for case_id, fut in futures:
                if fut is not None and fut.result():
                    synced += 1
                    advanced += 1
                else:
                    failed.append(case_id)
        finally:
            own.close()
    dt = time.perf_counter() - t0
    svc.metrics.inc("velador_node_sweeps_total")
    svc.metrics.set("velador_node_sweep_seconds", dt)
    if counted:
        svc.metrics.inc("velador_node_sweep_errors_total", counted)
    return SweepResult(advanced, synced, dt, now, tuple(failed), deferred)


class PeerSync:
    """Runs pre-release syncs on a fixed pool, outside the sweep and its lock (see above)."""

    def __init__(self, svc: NodeService, workers: int = SYNC_WORKERS) -> None:
        self.svc = svc
        self.slow = gossip.SlowPeers()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="peer-sync")
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def submit(self, case_id: str, now: int) -> Future[bool] | None:
        """Queue the sync of one case (None: it is already queued or running)."""
        with self._lock:
            if case_id in self._busy:
                return None
            self._busy.add(case_id)
        try:
            fut = self._pool.submit(self._run, case_id, now)
        except RuntimeError:  # shutting down: the next start-up sweep finds the case again
            self._done(case_id)
            return None
        # A sync dropped from the queue at shutdown never runs: it is not busy any more.
        fut.add_done_callback(lambda f: self._done(case_id) if f.cancelled() else None)
        return fut

    def _run(self, case_id: str, now: int) -> bool:
        try:
            effects = sync_and_advance(self.svc, case_id, now, self.slow)
            with self.svc.store.read() as conn:
                row = conn.execute(
                    "SELECT next_wake FROM cases WHERE case_id = ?", (case_id,)
                ).fetchone()
            self.svc.after_commit(effects, queued=True, wake=row[0] if row else None)
            return True
        except Exception as exc:
            # Its wake-up stays in the past: the periodic sweep queues it again.
            if not isinstance(exc, ClockAlarm):  # clockcheck logged it, in its own words
                _log_failure(case_id, "pre-release step", exc)
            self.svc.metrics.inc("velador_node_sweep_errors_total")
            return False
        finally:
            self._done(case_id)

    def _done(self, case_id: str) -> None:
        with self._lock:
            self._busy.discard(case_id)
            if not self._busy:
                self._idle.notify_all()

    def busy(self) -> int:
        with self._lock:
            return len(self._busy)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no sync is queued or running, at most `timeout` seconds."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._busy, timeout)

    def close(self, deadline: float | None = None) -> int:
        """Drop queued syncs; wait for running ones until `deadline` (monotonic; None: no limit).

        Returns how many still run: a peer that drips must not hold up a node told to stop.
        A case whose sync was cut short still has its wake-up in the past, so the start-up
        sweep of the next run syncs it again (protocol §5.3)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if left is None:
            self._pool.shutdown(wait=True)
            return 0
        self.wait_idle(left)
        return self.busy()


def _advance_one(
    svc: NodeService, conn: sqlite3.Connection, case_id: str, now: int
) -> tuple[bool, list[Effect], bool]:
    """Advance one case by time alone: (changed, effects, needs the pre-release sync)."""
    row = svc.load(conn, case_id)
    policy = svc.policy_of(row)
    rules = svc.rules_of(policy)
    old = state_of(row)
    new, effects = engine.advance(old, rules, now)
    sync = any(e.kind == "sync_peers" for e in effects)
    effects = [e for e in effects if e.kind != "sync_peers"]
    if new != old or effects:
        svc.apply(conn, row, policy, old, new, effects, now, "advance", {})
        return True, effects, sync
    wake = engine.next_wake(new, rules)
    if wake != row["next_wake"]:
        conn.execute("UPDATE cases SET next_wake = ? WHERE case_id = ?", (wake, case_id))
    return False, [], sync


def sync_and_advance(
    svc: NodeService, case_id: str, now: int, slow: gossip.SlowPeers | None = None
) -> list[Effect]:
    """The pre-release step (docs/protocol.md §4.3, §7.1) of one case, then its advance.

    Raises ClockAlarm, after committing the alarm's audit entry and any newer heartbeat a peer
    had, when the release it would write is refused by the clock check: this node's clock is
    ahead of most peers and, by their time, the release is not due yet."""
    with svc.store.read() as conn:
        policy = svc.policy_of(svc.load(conn, case_id))
    newest = gossip.newest_from_peers(svc, policy, slow)
    verdict = clockcheck.check(svc, policy, slow)
    effects: list[Effect] = []
    refused = False
    with svc.store.tx() as conn:
        row = svc.load(conn, case_id)
        if newest is not None and row["state"] not in engine.TERMINAL:
            seq = newest["body"]["seq"]
            if seq > row["seq"]:
                log.info(
                    "case %s: a peer had a newer heartbeat (seq %d); applying it", case_id, seq
                )
                conn.execute("SAVEPOINT peer_heartbeat")
                try:
                    hb, duress = verify_heartbeat(svc, policy, newest)
                    _, effects, _ = apply_heartbeat(
                        svc, conn, row, policy, hb, duress, now, {"node": "pre-release-sync"}
                    )
                except VeladorError as exc:
                    conn.execute("ROLLBACK TO peer_heartbeat")
                    log.warning("case %s: peer heartbeat refused: %s", case_id, exc)
                conn.execute("RELEASE peer_heartbeat")
                row = svc.load(conn, case_id)
        policy = svc.policy_of(row)
        rules = svc.rules_of(policy)
        old = state_of(row)
        new, more = engine.advance(old, rules, now, synced=True)
        if not verdict.ok and any(e.kind == "release" for e in more):
            refused = clockcheck.holds(verdict, engine.release_time(old, rules), now)
            if refused and clockcheck.hold_expired(
                svc, case_id, old.last_beat, rules.every + rules.grace
            ):
                refused = False  # held as long as a wrong clock could need: due in real time
            clockcheck.raise_alarm(svc, conn, policy, old, verdict, now, refused)
        if not refused:
            clockcheck.clear_alarm(svc, case_id)
            clockcheck.forget_hold(svc, case_id)
            svc.apply(conn, row, policy, old, new, more, now, "advance", {"synced": True})
    if refused:
        if effects:
            svc.after_commit(effects, queued=True)
        raise ClockAlarm(
            f"{verdict.text()}; release refused",
            hint="check this node's clock (NTP) against the peers' and fix it",
        )
    return effects + more
