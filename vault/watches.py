"""Watched folders (docs/format.md §8, table `watches`): what `velador agent` deposits by itself.

A case may name folders it protects (`velador case watch CASE PATH...`). A path says what the
reporter works on, so it is kept like the other per-case secrets: sealed to the owner's own
X25519 key (`b64(SealedBox(own box key, canonical({"v": 1, "path": absolute path})))`). Adding
one needs only the public key; reading the list needs the passphrase (or the agent's unlocked
key). What stays in the clear is what `velador status` shows without the passphrase: a number
per folder, the age limit the reporter chose, and when the folder was last escrowed (deposit
times are already in the clear in `snapshots`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .errors import N_, FormatError, NotFoundError
from .identity import Identity
from .state import LocalState, open_sealed, seal_to_self


@dataclass(frozen=True)
class Watch:
    watch_id: int
    case_id: str
    path: Path | None
    """None when the list was read without the key (the path is sealed)."""
    max_age: int | None
    added: int
    escrowed: int | None
    """When the agent last finished a deposit of this folder (its content as of that time)."""


def _open_path(sealed: str, identity: Identity) -> Path:
    doc = open_sealed(sealed, identity.box_key)
    if doc.get("v") != 1 or not isinstance(doc.get("path"), str):
        raise FormatError(
            N_("a watched-folder record is damaged"),
            hint=N_("remove the folder with 'velador case unwatch' and add it again"),
        )
    return Path(doc["path"])


def watches(
    state: LocalState, case_id: str | None = None, identity: Identity | None = None
) -> list[Watch]:
    """The watched folders (of one case, or all), with their paths when `identity` is given."""
    sql = "SELECT watch_id, case_id, sealed, max_age, added, escrowed FROM watches"
    args: list[str] = []
    if case_id is not None:
        sql += " WHERE case_id = ?"
        args.append(case_id)
    rows = state.db.execute(sql + " ORDER BY case_id, watch_id", args).fetchall()
    return [
        Watch(
            wid,
            cid,
            _open_path(sealed, identity) if identity is not None else None,
            max_age,
            added,
            escrowed,
        )
        for wid, cid, sealed, max_age, added, escrowed in rows
    ]


def _root_name(path: Path) -> str:
    return unicodedata.normalize("NFC", path.name)


def add_watch(
    state: LocalState,
    identity: Identity,
    case_id: str,
    path: Path,
    max_age: int | None,
    now: int,
) -> tuple[Watch, bool]:
    """Watch `path` for the case; (the watch, True if new). Watching it again sets `max_age`.

    Two watched folders with the same name in one case are refused: a snapshot's roots are
    named by their last component (docs/format.md §6.4) and deposit refuses two alike."""
    path = path.expanduser().resolve()
    if not path.exists():
        raise NotFoundError(
            N_("cannot watch %(path)s: no such file or folder"),
            hint=N_("check the path; give the folder that holds your work"),
            path=path,
        )
    for w in watches(state, case_id, identity):
        if w.path == path:
            if max_age is not None and max_age != w.max_age:
                with state.tx():
                    state.db.execute(
                        "UPDATE watches SET max_age = ? WHERE watch_id = ?", [max_age, w.watch_id]
                    )
                w = Watch(w.watch_id, w.case_id, w.path, max_age, w.added, w.escrowed)
            return w, False
        if w.path is not None and _root_name(w.path) == _root_name(path):
            raise FormatError(
                N_("this case already watches a folder named %(name)r"),
                hint=N_("rename one of them, or watch their common parent folder"),
                name=path.name,
            )
    sealed = seal_to_self({"v": 1, "path": str(path)}, identity.card.box_pk)
    with state.tx():
        cur = state.db.execute(
            "INSERT INTO watches (case_id, sealed, max_age, added, escrowed)"
            " VALUES (?, ?, ?, ?, NULL)",
            [case_id, sealed, max_age, now],
        )
    return Watch(int(cur.lastrowid or 0), case_id, path, max_age, now, None), True


def remove_watch(state: LocalState, identity: Identity, case_id: str, path: Path) -> Watch:
    """Stop watching `path` (as typed, or resolved). Deposits already made stay in escrow."""
    want = {path.expanduser().absolute(), path.expanduser().resolve()}
    for w in watches(state, case_id, identity):
        if w.path in want:
            with state.tx():
                state.db.execute("DELETE FROM watches WHERE watch_id = ?", [w.watch_id])
            return w
    raise NotFoundError(
        N_("this case does not watch %(path)s"),
        hint=N_("list them with 'velador case watch CASE'"),
        path=path,
    )


def mark_escrowed(state: LocalState, watch_ids: list[int], when: int) -> None:
    """Record that these folders, as they were at `when`, are now in every store."""
    with state.tx():
        state.db.conn.executemany(
            "UPDATE watches SET escrowed = max(coalesce(escrowed, 0), ?) WHERE watch_id = ?",
            [(when, wid) for wid in watch_ids],
        )
