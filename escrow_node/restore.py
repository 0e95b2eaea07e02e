"""Restoring a node database from a backup (docs/protocol.md §6.3).

A restored database has forgotten every heartbeat after the backup. Started as it is, the node
would release a case whose *stale* deadline and grace have passed, unless a peer answers the
pre-release sync with a newer heartbeat; a single-node case has no peer to ask. `restore` copies
the backup in with SQLite's backup API and then re-arms every case in a watching state as if a
heartbeat had arrived at the restore time: deadline = max(stored deadline, now + every),
reminders reset, OVERDUE back to ARMED. A reporter who did check in is therefore never released
because of the restore; one who really fell silent is released at most one interval plus grace
later than the lost database would have done. Editor releases, pauses and destroy delays are kept
as they were (their times were set by people, not by the missing heartbeats). Every re-armed case
gets an audit entry `restore`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import replace
from pathlib import Path

from vault.policy import parse_policy

from . import audit, engine
from .db import SCHEMA_VERSION, Store
from .errors import ConfigError
from .service import _STATE_COLS, _state_values, state_of


def check_backup(path: Path) -> None:
    """The backup must be a sound node database of a schema this software reads."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM cases").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path} is not a node database ({exc})") from exc
    if ok != "ok":
        raise ConfigError(f"{path} fails SQLite's integrity check")
    if not 1 <= version <= SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has node schema version {version}; this software reads 1 to {SCHEMA_VERSION}"
        )


def copy_in(backup: Path, db_path: Path) -> None:
    """Replace DIR/node.db by the backup (the node must be stopped)."""
    for suffix in ("", "-wal", "-shm"):
        # A leftover WAL would be replayed onto the restored file and corrupt it.
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    src = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
    fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    dst = sqlite3.connect(str(db_path))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def rearm(store: Store, now: int) -> list[tuple[str, str, int]]:
    """Re-arm every watching case at `now`; returns (case id, old state, new deadline)."""
    out: list[tuple[str, str, int]] = []
    with store.tx() as conn:
        rows = conn.execute(
            "SELECT * FROM cases WHERE state IN (?, ?, ?, ?)", (*engine.WATCHING, "EDITOR_PENDING")
        ).fetchall()
        for row in rows:
            cs = state_of(row)
            if cs.state == engine.EDITOR_PENDING and cs.prior not in engine.WATCHING:
                continue
            policy = parse_policy(json.loads(row["policy"]))
            assert policy.switch is not None
            rules = engine.Rules.from_switch(policy.switch)
            deadline = max(cs.deadline, now + rules.every)
            if cs.state == engine.EDITOR_PENDING:
                new = replace(cs, deadline=deadline, reminded=0, warned=False, prior=engine.ARMED)
            else:
                new = replace(cs, state=engine.ARMED, deadline=deadline, reminded=0, warned=False)
            cols = ", ".join(f"{c} = ?" for c in _STATE_COLS)
            # Column names come from the constant _STATE_COLS; values are bound parameters.
            conn.execute(
                f"UPDATE cases SET {cols}, next_wake = ?, updated = ?, version = version + 1"  # noqa: S608
                " WHERE case_id = ?",
                [*_state_values(new), engine.next_wake(new, rules), now, row["case_id"]],
            )
            audit.append(
                conn,
                now,
                row["case_id"],
                "restore",
                {"from": cs.state, "to": new.state, "deadline": deadline},
            )
            out.append((row["case_id"], cs.state, deadline))
    return out
