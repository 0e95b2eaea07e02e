"""The cover state: what a captor holding the reporter is shown (docs/protocol.md §4.4).

A reporter request that carries the duress marker (a check-in, or a status, pause, resume,
destroy, release-now, objection or rotation request: §3.2) is answered from the *cover* state
of the case, never from its real state. The cover is what the reporter's requests would have led
to had they been made with the normal passphrase: the captor forces a pause, the answer says
PAUSED and later duress-marked status answers keep saying it, while the real case was not paused
(engine.duress_signal: silent alarm to the editors, and a release under a "release" policy).

The cover starts from the real state at the first duress-marked request and then follows only
the duress-marked requests, through the same pure engine functions, projected to the present
with engine.advance when read (a cover pause ends on time; effects are discarded: the cover
never notifies anyone). A request with the normal marker, or a normal check-in, drops it: the
reporter is free again and sees the real state.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields

from . import engine
from .engine import CaseState, Rules

_FIELDS = tuple(f.name for f in fields(CaseState))


def _dump(cs: CaseState) -> str:
    return json.dumps({name: getattr(cs, name) for name in _FIELDS})


def _load(text: str) -> CaseState:
    doc = json.loads(text)
    doc["editors"] = tuple(doc.get("editors", ()))
    return CaseState(**{k: v for k, v in doc.items() if k in _FIELDS})


def basis(
    conn: sqlite3.Connection, real: CaseState, policy_hash: str, case_id: str
) -> tuple[CaseState, str]:
    """The state and policy hash a duress-marked request starts from.

    Without a stored cover, the real state, except that a release caused by the duress marker
    itself (duress = release, or a node that released before covers existed) is shown as the
    state the normal request would have left: the heartbeat's deadline, before the release."""
    row = conn.execute(
        "SELECT policy_hash, state FROM covers WHERE case_id = ?", (case_id,)
    ).fetchone()
    if row is not None:
        return _load(row[1]), row[0]
    if real.state == engine.RELEASED and real.release_reason == "duress":
        real = engine.replace(
            real, state=engine.ARMED, released_at=None, release_reason=None, reminded=0
        )
    return real, policy_hash


def shown(
    conn: sqlite3.Connection,
    real: CaseState,
    policy_hash: str,
    case_id: str,
    rules: Rules,
    now: int,
) -> tuple[CaseState, str]:
    """The cover as of `now` (time-driven transitions applied, effects discarded)."""
    cs, ph = basis(conn, real, policy_hash, case_id)
    cs, _ = engine.advance(cs, rules, now, synced=True)
    return cs, ph


def save(conn: sqlite3.Connection, case_id: str, cs: CaseState, policy_hash: str, now: int) -> None:
    conn.execute(
        "INSERT INTO covers (case_id, policy_hash, state, updated) VALUES (?,?,?,?)"
        " ON CONFLICT(case_id) DO UPDATE SET policy_hash = excluded.policy_hash,"
        " state = excluded.state, updated = excluded.updated",
        (case_id, policy_hash, _dump(cs), now),
    )


def exists(conn: sqlite3.Connection, case_id: str) -> bool:
    return conn.execute("SELECT 1 FROM covers WHERE case_id = ?", (case_id,)).fetchone() is not None


def clear(conn: sqlite3.Connection, case_id: str) -> None:
    conn.execute("DELETE FROM covers WHERE case_id = ?", (case_id,))
