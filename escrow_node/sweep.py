"""The engine driver (docs/protocol.md §5.3): advance every case whose next wake-up is due.

Cases are advanced in batches, one transaction per batch. A case whose grace period is over
first goes through the pre-release peer sync (gossip.newest_from_peers) outside any transaction,
then is advanced again with `synced=True` in its own transaction, which re-reads the state: a
heartbeat that arrived meanwhile wins.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from vault.errors import VeladorError

from . import engine, gossip
from .operations import apply_heartbeat, verify_heartbeat
from .service import NodeService, state_of

log = logging.getLogger("velador.node.sweep")
BATCH = 256


@dataclass(frozen=True)
class SweepResult:
    advanced: int
    synced: int
    seconds: float


def sweep(svc: NodeService, now: int | None = None) -> SweepResult:
    t0 = time.perf_counter()
    now = svc.clock.now() if now is None else now
    seen: set[str] = set()
    advanced = 0
    to_sync: list[str] = []
    all_effects = []
    while True:
        with svc.store.read() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT case_id FROM cases WHERE next_wake IS NOT NULL AND next_wake <= ?"
                    " ORDER BY next_wake LIMIT ?",
                    (now, BATCH + len(seen)),
                )
                if r[0] not in seen
            ][:BATCH]
        if not ids:
            break
        with svc.store.tx() as conn:
            for case_id in ids:
                seen.add(case_id)
                row = svc.load(conn, case_id)
                policy = svc.policy_of(row)
                rules = svc.rules_of(policy)
                old = state_of(row)
                new, effects = engine.advance(old, rules, now)
                if any(e.kind == "sync_peers" for e in effects):
                    to_sync.append(case_id)
                    effects = [e for e in effects if e.kind != "sync_peers"]
                if new != old or effects:
                    svc.apply(conn, row, policy, old, new, effects, now, "advance", {})
                    all_effects += effects
                    advanced += 1
                elif engine.next_wake(new, rules) != row["next_wake"]:
                    conn.execute(
                        "UPDATE cases SET next_wake = ? WHERE case_id = ?",
                        (engine.next_wake(new, rules), case_id),
                    )
    for case_id in to_sync:
        try:
            all_effects += sync_and_advance(svc, case_id, now)
            advanced += 1
        except VeladorError as exc:  # pragma: no cover - logged, retried next sweep
            log.error("case %s: pre-release step failed: %s", case_id, exc)
    if advanced or all_effects:
        svc.after_commit(all_effects, queued=True)
    dt = time.perf_counter() - t0
    svc.metrics.inc("velador_node_sweeps_total")
    svc.metrics.set("velador_node_sweep_seconds", dt)
    return SweepResult(advanced, len(to_sync), dt)


def sync_and_advance(svc: NodeService, case_id: str, now: int) -> list:
    with svc.store.read() as conn:
        policy = svc.policy_of(svc.load(conn, case_id))
    newest = gossip.newest_from_peers(svc, policy)
    effects: list = []
    with svc.store.tx() as conn:
        row = svc.load(conn, case_id)
        if newest is not None and row["state"] not in engine.TERMINAL:
            seq = newest["body"]["seq"]
            if seq > row["seq"]:
                log.info(
                    "case %s: a peer had a newer heartbeat (seq %d); applying it", case_id, seq
                )
                try:
                    hb, duress = verify_heartbeat(svc, policy, newest)
                    _, effects, _ = apply_heartbeat(
                        svc, conn, row, policy, hb, duress, now, {"node": "pre-release-sync"}
                    )
                except VeladorError as exc:
                    log.warning("case %s: peer heartbeat refused: %s", case_id, exc)
                row = svc.load(conn, case_id)
        policy = svc.policy_of(row)
        rules = svc.rules_of(policy)
        old = state_of(row)
        new, more = engine.advance(old, rules, now, synced=True)
        svc.apply(conn, row, policy, old, new, more, now, "advance", {"synced": True})
    return effects + more
