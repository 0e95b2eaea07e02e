"""Who may register a NEW case at this node (docs/protocol.md §4.1.1).

Registration is closed unless node.toml says `[registration] mode = "open"`. On a closed node a
new case is accepted only when its reporter's key was admitted by the operator
(`velador node admit FINGERPRINT`), or when the registration carries a valid invitation code
(`velador node invite`). A code is single-use and expires; using it admits the reporter's key,
so the same reporter's later cases need no new code.

Only the registration of a case id this node does not hold is gated. Everything a registered
case's reporter does later (heartbeats, rotations of the same case, pauses) is never checked
here: refusing a check-in because of an admission rule would cause a false release. Revoking a
key therefore stops only new cases.

Invitation codes are secrets. A code is `ID.SECRET`: the node stores the id and the SHA-256 of
the secret, never the code; the secret is compared in constant time (hmac.compare_digest). No
code is ever logged, written to the audit log or put in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

from .config import RegistrationConfig
from .errors import BadRequest, InvitationRefused, RegistrationClosed

FINGERPRINT_RE = re.compile(r"^[A-Z2-7]{16}$")
CODE_RE = re.compile(r"^([0-9a-f]{12})\.([A-Za-z0-9_-]{32})$")
MAX_CODE = 128


@dataclass(frozen=True)
class Invitation:
    id: str
    created: int
    expires: int
    used: int | None
    used_by: str | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def check_fingerprint(fp: str) -> str:
    """A card fingerprint (vault/cards.py) in its printed form XXXX-XXXX-XXXX-XXXX; spaces,
    dashes and letter case in the input are ignored."""
    clean = re.sub(r"[\s-]", "", fp).upper()
    if not FINGERPRINT_RE.match(clean):
        raise BadRequest(
            f"{fp[:40]!r} is not a key fingerprint (16 letters and digits, as XXXX-XXXX-XXXX-XXXX)"
        )
    return "-".join(clean[i : i + 4] for i in range(0, 16, 4))


def admit(conn: sqlite3.Connection, fingerprint: str, now: int, how: str = "operator") -> bool:
    """Admit a reporter key; False if it already was."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO admitted (fingerprint, added, how) VALUES (?,?,?)",
        (check_fingerprint(fingerprint), now, how),
    )
    return cur.rowcount == 1


def revoke(conn: sqlite3.Connection, what: str) -> str | None:
    """Remove an admitted fingerprint or an unused invitation (by its id). Returns which kind
    was removed ('key' or 'invitation'), or None if nothing matched."""
    if re.fullmatch(r"[0-9a-f]{12}", what):
        cur = conn.execute("DELETE FROM invitations WHERE id = ? AND used IS NULL", (what,))
        return "invitation" if cur.rowcount else None
    cur = conn.execute("DELETE FROM admitted WHERE fingerprint = ?", (check_fingerprint(what),))
    return "key" if cur.rowcount else None


def invite(conn: sqlite3.Connection, now: int, ttl: int) -> tuple[str, int]:
    """Make a single-use invitation code; returns (code, expiry). The code is shown once."""
    ident = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)  # 192 bits, 32 characters
    expires = now + ttl
    conn.execute(
        "INSERT INTO invitations (id, verifier, created, expires) VALUES (?,?,?,?)",
        (ident, _digest(secret), now, expires),
    )
    return f"{ident}.{secret}", expires


def admitted(conn: sqlite3.Connection) -> list[tuple[str, int, str]]:
    return [
        (r[0], r[1], r[2])
        for r in conn.execute("SELECT fingerprint, added, how FROM admitted ORDER BY added, 1")
    ]


def invitations(conn: sqlite3.Connection) -> list[Invitation]:
    rows = conn.execute(
        "SELECT id, created, expires, used, used_by FROM invitations ORDER BY created, id"
    )
    return [Invitation(*r) for r in rows]


def _consume(conn: sqlite3.Connection, code: str, fingerprint: str, now: int) -> None:
    """Use an invitation code inside the registration's transaction (so a failed registration
    does not burn it, and two registrations racing for one code cannot both win)."""
    m = CODE_RE.match(code) if len(code) <= MAX_CODE else None
    row = None
    if m is not None:
        row = conn.execute(
            "SELECT verifier, expires, used FROM invitations WHERE id = ?", (m.group(1),)
        ).fetchone()
    # One answer for unknown, wrong, used and expired codes: the caller learns nothing about
    # which ids exist.
    refused = InvitationRefused(
        "the invitation code is not valid: it is unknown, was already used, or has expired",
        hint="ask the node's operator for a new invitation code",
    )
    if row is None or m is None:
        raise refused
    good = hmac.compare_digest(row[0].encode("ascii"), _digest(m.group(2)).encode("ascii"))
    if not good or row[2] is not None or row[1] <= now:
        raise refused
    cur = conn.execute(
        "UPDATE invitations SET used = ?, used_by = ? WHERE id = ? AND used IS NULL",
        (now, fingerprint, m.group(1)),
    )
    if cur.rowcount != 1:  # pragma: no cover - the write lock makes this unreachable
        raise refused
    admit(conn, fingerprint, now, how=f"invitation {m.group(1)}")


def gate(
    conn: sqlite3.Connection,
    reg: RegistrationConfig,
    fingerprint: str,
    invitation: str | None,
    now: int,
) -> str:
    """May this reporter register a new case? Returns how ('open', 'admitted', 'invitation');
    raises RegistrationClosed or InvitationRefused. Runs inside the registration transaction."""
    if reg.open:
        return "open"
    known = conn.execute("SELECT 1 FROM admitted WHERE fingerprint = ?", (fingerprint,)).fetchone()
    if known is not None:
        return "admitted"
    if invitation is None:
        raise RegistrationClosed(
            "this node accepts new cases only from reporters its operator admitted",
            hint="ask the node's operator for an invitation code and pass it with "
            "'--invite NODE' (see the reporter guide), or give them your key fingerprint "
            f"{fingerprint} to admit",
        )
    _consume(conn, invitation, fingerprint, now)
    return "invitation"


@dataclass
class RegistrationRequests:
    """Reporters refused because registration is closed (the operator's dashboard lists them),
    newest last, kept in memory.

    In memory on purpose: a refused registration writes nothing (its transaction rolls back), so
    a stranger cannot grow the database by making keys; the list is bounded and starts empty at
    each restart (the reporter's tool retries, and the refusal told them whom to ask)."""

    kept: int = 50
    _items: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, fingerprint: str, now: int) -> None:
        with self._lock:
            first, _last, count = self._items.pop(fingerprint, [now, now, 0])
            self._items[fingerprint] = [first, now, count + 1]
            while len(self._items) > self.kept:
                self._items.pop(next(iter(self._items)))

    def forget(self, fingerprint: str) -> None:
        with self._lock:
            self._items.pop(fingerprint, None)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"fingerprint": fp, "first": v[0], "last": v[1], "attempts": v[2]}
                for fp, v in reversed(self._items.items())
            ]
