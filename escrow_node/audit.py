"""Hash-chained audit log (docs/protocol.md §6.2).

Entry n stores hash_n = BLAKE2b-256(canonical_json({seq, time, case_id, event, detail, prev}))
with prev = hash_{n-1} (64 zeros for the first entry). Changing, removing or reordering any entry
breaks every later hash; `verify` walks the chain. The log records what the node did and when,
never anything sealed: detail holds sequence numbers, states, reasons and fingerprints.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from vault.encoding import canonical_json, doc_hash

GENESIS = "0" * 64

_heads: dict[sqlite3.Connection, tuple[int, str] | None] = {}
"""Connection -> (seq, hash) of the chain head it last wrote, only while `head_kept` is active
for it; None means "read it from the table"."""


@contextmanager
def head_kept(conn: sqlite3.Connection) -> Iterator[None]:
    """Keep the chain head in memory for one write transaction, instead of reading it back with
    a SELECT for every entry (on the heartbeat group commit every statement hands the GIL over).

    Only for a caller that holds the connection's write lock for the whole transaction, so no
    other code appends meanwhile; whoever rolls back part of the transaction (ROLLBACK TO)
    must call `forget_head`, and the head is dropped when the block ends either way."""
    _heads[conn] = None
    try:
        yield
    finally:
        _heads.pop(conn, None)


def forget_head(conn: sqlite3.Connection) -> None:
    """After a ROLLBACK TO: the next entry reads the head from the table again."""
    if conn in _heads:
        _heads[conn] = None


def entry_hash(seq: int, time: int, case_id: str | None, event: str, detail: Any, prev: str) -> str:
    return doc_hash(
        {
            "seq": seq,
            "time": time,
            "case_id": case_id,
            "event": event,
            "detail": detail,
            "prev": prev,
        }
    )


def append(
    conn: sqlite3.Connection, time: int, case_id: str | None, event: str, detail: Any
) -> str:
    """Append one entry inside the caller's transaction; returns its hash."""
    head = _heads.get(conn)
    if head is None:
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        head = (row[0], row[1]) if row else (0, GENESIS)
    seq, prev = head[0] + 1, head[1]
    h = entry_hash(seq, time, case_id, event, detail, prev)
    conn.execute(
        "INSERT INTO audit (seq, time, case_id, event, detail, prev, hash) VALUES (?,?,?,?,?,?,?)",
        (seq, time, case_id, event, canonical_json(detail).decode(), prev, h),
    )
    if conn in _heads:
        _heads[conn] = (seq, h)
    return h


@dataclass(frozen=True)
class AuditCheck:
    ok: bool
    entries: int
    head: str
    first_bad: int | None = None
    reason: str = ""


def verify(conn: sqlite3.Connection) -> AuditCheck:
    prev = GENESIS
    expected_seq = 1
    n = 0
    for row in conn.execute(
        "SELECT seq, time, case_id, event, detail, prev, hash FROM audit ORDER BY seq"
    ):
        seq, time, case_id, event, detail, stored_prev, stored_hash = tuple(row)
        if seq != expected_seq:
            return AuditCheck(False, n, prev, seq, f"entry {expected_seq} is missing")
        if stored_prev != prev:
            return AuditCheck(False, n, prev, seq, "link to the previous entry is broken")
        try:
            parsed = json.loads(detail)
        except ValueError:
            return AuditCheck(False, n, prev, seq, "detail is not JSON")
        if entry_hash(seq, time, case_id, event, parsed, prev) != stored_hash:
            return AuditCheck(False, n, prev, seq, "entry was altered")
        prev = stored_hash
        expected_seq += 1
        n += 1
    return AuditCheck(True, n, prev)


def entries(
    conn: sqlite3.Connection, case_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    sql = "SELECT seq, time, case_id, event, detail, hash FROM audit"
    args: tuple[Any, ...] = ()
    if case_id:
        sql += " WHERE case_id = ?"
        args = (case_id,)
    sql += " ORDER BY seq DESC LIMIT ?"
    rows = conn.execute(sql, (*args, limit)).fetchall()
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in reversed(rows)]
