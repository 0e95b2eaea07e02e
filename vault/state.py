"""Local state of a Velador home (docs/format.md §8): contacts, cases, snapshots, object index.

SQLite in WAL mode with synchronous=FULL, through the standard sqlite3 module and the small `Db`
wrapper below rather than sqlite-utils: that library imports numpy whenever it is installed and
loads the plugins of every installed package into the connection, which cost every command
start-up time and memory and would hand our database to code we did not choose.

What is kept here is chosen for a seized laptop: no file names, no plaintext hashes, no release
secret. Per-case secrets needed for deposits (the chunk key and the chunker seed) are sealed to the
owner's own X25519 key, so they open only with the identity passphrase; the file cache is indexed
by a keyed hash of the path.

Share envelopes (kept for `case arm` at nodes that missed the registration, `velador audit` and
`case rotate`, which carries them into the keyring) are sealed to the owner's key too, each one
(`sealed1:` || b64(SealedBox(owner box key).encrypt(envelope JSON)), docs/format.md §8), so no
recipient's key opens anything in this file: a recipient's key AND the reporter's passphrase are
needed (docs/threat-model.md, "Finding 4"). Homes written before are sealed when next opened;
`secure_delete` and a VACUUM scrub the plain copies from the file.
"""

from __future__ import annotations

import difflib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from .cards import Card, parse_card
from .encoding import b64d, b64e, canonical_json, parse_json
from .errors import N_, AuthenticationError, FormatError, NotFoundError
from .policy import Policy, parse_policy

DB_FILE = "state.db"
SEALED_ENVELOPE = "sealed1:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
  alias TEXT PRIMARY KEY, card TEXT NOT NULL, fingerprint TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL, role TEXT NOT NULL, added INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
  case_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, policy TEXT NOT NULL,
  policy_hash TEXT NOT NULL, created INTEGER NOT NULL, secrets TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active', extra TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS envelopes (
  case_id TEXT NOT NULL, policy_hash TEXT NOT NULL, holder TEXT NOT NULL,
  recipient TEXT NOT NULL, envelope TEXT NOT NULL,
  PRIMARY KEY (case_id, policy_hash, holder, recipient));
CREATE TABLE IF NOT EXISTS snapshots (
  snap_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, seq INTEGER NOT NULL,
  created INTEGER NOT NULL, parent TEXT, files INTEGER NOT NULL, bytes INTEGER NOT NULL,
  tree_hash TEXT NOT NULL, policy_hash TEXT NOT NULL, csize INTEGER NOT NULL,
  chash TEXT NOT NULL, UNIQUE (case_id, seq));
CREATE TABLE IF NOT EXISTS objects (
  case_id TEXT NOT NULL, oid TEXT NOT NULL, csize INTEGER NOT NULL, chash TEXT,
  PRIMARY KEY (case_id, oid));
CREATE TABLE IF NOT EXISTS packed (
  case_id TEXT NOT NULL, oid TEXT NOT NULL, pack TEXT NOT NULL, poff INTEGER NOT NULL,
  plen INTEGER NOT NULL, PRIMARY KEY (case_id, oid));
CREATE VIEW IF NOT EXISTS known AS
  SELECT case_id, oid FROM objects
  UNION ALL
  SELECT p.case_id, p.oid FROM packed p
    JOIN objects o ON o.case_id = p.case_id AND o.oid = p.pack;
CREATE TABLE IF NOT EXISTS filecache (
  case_id TEXT NOT NULL, pathkey TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
  ino INTEGER NOT NULL, chunks TEXT NOT NULL, PRIMARY KEY (case_id, pathkey));
CREATE TABLE IF NOT EXISTS inbox_cursor (
  node TEXT PRIMARY KEY, seen INTEGER NOT NULL, updated INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS node_regs (
  case_id TEXT NOT NULL, policy_hash TEXT NOT NULL, node TEXT NOT NULL, card TEXT NOT NULL,
  state TEXT NOT NULL, detail TEXT, updated INTEGER NOT NULL,
  PRIMARY KEY (case_id, policy_hash, node));
CREATE TABLE IF NOT EXISTS hb_seq (case_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hb_queue (
  case_id TEXT NOT NULL, node TEXT NOT NULL, seq INTEGER NOT NULL, heartbeat TEXT NOT NULL,
  tickets TEXT NOT NULL, created INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT, PRIMARY KEY (case_id, node));
CREATE TABLE IF NOT EXISTS node_views (
  case_id TEXT NOT NULL, node TEXT NOT NULL, state TEXT NOT NULL, seq INTEGER NOT NULL,
  deadline INTEGER, release_at INTEGER, paused_until INTEGER, time INTEGER NOT NULL,
  PRIMARY KEY (case_id, node));
CREATE TABLE IF NOT EXISTS policy_history (
  case_id TEXT NOT NULL, policy_hash TEXT NOT NULL, policy TEXT NOT NULL,
  PRIMARY KEY (case_id, policy_hash));
CREATE TABLE IF NOT EXISTS reminders (
  case_id TEXT NOT NULL, deadline INTEGER NOT NULL, offset INTEGER NOT NULL, sent INTEGER NOT NULL,
  PRIMARY KEY (case_id, deadline, offset));
CREATE TABLE IF NOT EXISTS watches (
  watch_id INTEGER PRIMARY KEY, case_id TEXT NOT NULL, sealed TEXT NOT NULL,
  max_age INTEGER, added INTEGER NOT NULL, escrowed INTEGER);
"""


@dataclass(frozen=True)
class CaseRecord:
    case_id: str
    name: str
    policy: Policy
    created: int
    status: str
    sealed_secrets: str
    extra: dict[str, Any]


class Table:
    """Inserts into one table of a `Db`, in the caller's transaction (`LocalState.tx`)."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        if not name.isidentifier():
            raise ValueError(f"not a table name: {name!r}")
        self.conn, self.name = conn, name

    def insert(self, row: dict[str, Any], *, replace: bool = False) -> None:
        self.insert_all([row], replace=replace)

    def insert_all(self, rows: Iterable[dict[str, Any]], *, replace: bool = False) -> None:
        """Insert rows that all have the same columns (the keys of the first row)."""
        rows = list(rows)
        if not rows:
            return
        cols = list(rows[0])
        if not all(c.isidentifier() for c in cols):
            raise ValueError(f"not column names: {cols!r}")
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        sql = (
            f"{verb} INTO {self.name} ({', '.join(cols)}) "  # identifiers checked above
            f"VALUES ({', '.join('?' for _ in cols)})"
        )
        self.conn.executemany(sql, [[r[c] for c in cols] for r in rows])


class Db:
    """The few operations Velador needs from its database: `execute`, `query` (rows as dicts),
    `db[table].insert(...)`, and `conn` for transactions (`with db.conn:`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Any = ()) -> Iterator[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description or ()]
        for row in cur:
            yield dict(zip(names, row, strict=True))

    def __getitem__(self, table: str) -> Table:
        return Table(self.conn, table)


def open_db(path: Path) -> Db:
    db = Db(sqlite3.connect(str(path)))
    db.conn.execute("PRAGMA journal_mode=WAL")
    db.conn.execute("PRAGMA synchronous=FULL")
    db.conn.execute("PRAGMA busy_timeout=10000")
    return db


class LocalState:
    """The home's database through one SQLite connection.

    A connection belongs to the thread that opened it (sqlite3's check_same_thread): a
    long-running process opens one LocalState per thread that needs it (cli/agent_runtime.py:
    the rounds in the main thread, deposits in the deposit thread), never shares one."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = home / DB_FILE
        self.db = open_db(self.path)
        # Deleted and overwritten rows are zeroed in the file, not left in free pages.
        self.db.conn.execute("PRAGMA secure_delete=ON")
        self.db.conn.executescript(_SCHEMA)
        self.path.chmod(0o600)
        self._seal_plain_envelopes()

    def _seal_plain_envelopes(self) -> None:
        """Migration: envelopes stored in plain JSON by earlier versions are sealed to the
        reporter's key (the case policy names it), then the file is scrubbed."""
        rows = self.db.execute(
            "SELECT e.case_id, e.policy_hash, e.holder, e.recipient, e.envelope, c.policy"
            " FROM envelopes e JOIN cases c ON c.case_id = e.case_id"
            " WHERE e.envelope NOT LIKE ?",
            [SEALED_ENVELOPE + "%"],
        ).fetchall()
        if not rows:
            return
        owners: dict[str, bytes] = {}
        with self.tx():
            for case_id, ph, holder, recipient, env, policy in rows:
                if case_id not in owners:
                    owners[case_id] = parse_policy(json.loads(policy)).reporter.box_pk
                self.db.execute(
                    "UPDATE envelopes SET envelope = ? WHERE case_id = ? AND policy_hash = ?"
                    " AND holder = ? AND recipient = ?",
                    [
                        _seal_envelope(json.loads(env), owners[case_id]),
                        case_id,
                        ph,
                        holder,
                        recipient,
                    ],
                )
        self.scrub()

    def scrub(self) -> None:
        """Rewrite the file and empty the write-ahead log: no old page keeps a plain copy."""
        self.db.conn.execute("VACUUM")
        self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def tx(self) -> Iterator[None]:
        with self.db.conn:
            yield

    # --- contacts --------------------------------------------------------------------------
    def add_contact(self, alias: str, card: Card, now: int) -> None:
        alias = alias.strip()
        if not alias or len(alias) > 64 or any(c.isspace() for c in alias):
            raise FormatError(
                N_("an alias must be 1-64 characters without spaces"),
                hint=N_("for example --alias ana-reportera"),
            )
        existing = self.db.execute(
            "SELECT alias FROM contacts WHERE fingerprint = ? OR alias = ?",
            [card.fingerprint, alias],
        ).fetchone()
        if existing:
            raise FormatError(
                N_("contact %(existing)r already exists with this alias or fingerprint"),
                hint=N_("pick another alias, or remove the old contact first"),
                existing=existing[0],
            )
        with self.tx():
            self.db["contacts"].insert(
                {
                    "alias": alias,
                    "card": card.text,
                    "fingerprint": card.fingerprint,
                    "name": card.name,
                    "role": card.role,
                    "added": now,
                }
            )

    def contacts(self) -> list[tuple[str, Card]]:
        rows = self.db.execute("SELECT alias, card FROM contacts ORDER BY alias").fetchall()
        return [(alias, parse_card(card)) for alias, card in rows]

    def contact(self, alias: str) -> Card:
        row = self.db.execute("SELECT card FROM contacts WHERE alias = ?", [alias]).fetchone()
        if row is None:
            raise NotFoundError(
                N_("no contact named %(alias)r"), hint=N_("see 'velador contact list'"), alias=alias
            )
        return parse_card(row[0])

    def contact_added(self, alias: str) -> int:
        """When the contact was added (seconds since the epoch)."""
        row = self.db.execute("SELECT added FROM contacts WHERE alias = ?", [alias]).fetchone()
        if row is None:
            raise NotFoundError(
                N_("no contact named %(alias)r"), hint=N_("see 'velador contact list'"), alias=alias
            )
        return int(row[0])

    def remove_contact(self, alias: str) -> Card:
        """Forget a contact. Cases keep the cards their signed policies carry."""
        card = self.contact(alias)
        with self.tx():
            self.db.execute("DELETE FROM contacts WHERE alias = ?", [alias])
        return card

    def alias_of(self, card: Card) -> str | None:
        row = self.db.execute(
            "SELECT alias FROM contacts WHERE fingerprint = ?", [card.fingerprint]
        ).fetchone()
        return row[0] if row else None

    # --- cases -----------------------------------------------------------------------------
    def add_case(
        self, name: str, policy: Policy, sealed_secrets: str, extra: dict[str, Any]
    ) -> None:
        if self.db.execute("SELECT 1 FROM cases WHERE name = ?", [name]).fetchone():
            raise FormatError(
                N_("a case named %(name)r already exists"),
                hint=N_("choose another name; 'velador case list' shows the ones in use"),
                name=name,
            )
        with self.tx():
            self.db["cases"].insert(
                {
                    "case_id": policy.case_id,
                    "name": name,
                    "policy": json.dumps(policy.doc),
                    "policy_hash": policy.hash,
                    "created": policy.created,
                    "secrets": sealed_secrets,
                    "status": "active",
                    "extra": json.dumps(extra),
                }
            )

    def has_case(self, name_or_id: str) -> bool:
        """Whether this home owns the case (editors and recipients look at others' cases)."""
        row = self.db.execute(
            "SELECT 1 FROM cases WHERE name = ? OR case_id = ?", [name_or_id, name_or_id]
        ).fetchone()
        return row is not None

    def case(self, name_or_id: str) -> CaseRecord:
        row = self.db.execute(
            "SELECT case_id, name, policy, created, status, secrets, extra FROM cases "
            "WHERE name = ? OR case_id = ?",
            [name_or_id, name_or_id],
        ).fetchone()
        if row is None:
            raise self.no_case(name_or_id)
        policy = parse_policy(parse_json(row[2], "stored policy"))
        return CaseRecord(row[0], row[1], policy, row[3], row[4], row[5], json.loads(row[6]))

    def no_case(self, name: str) -> NotFoundError:
        """The error for a case this home does not have, suggesting the closest name (a typo
        such as "puerta" for "puerto" should not send the reporter looking for case cards)."""
        names = [r[0] for r in self.db.execute("SELECT name FROM cases ORDER BY name")]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = N_("did you mean %(close)r?") if close else N_("see 'velador case list'")
        return NotFoundError(
            N_("no case named %(name)r"), hint=hint, name=name, close=close[0] if close else ""
        )

    def cases(self) -> list[CaseRecord]:
        names = [r[0] for r in self.db.execute("SELECT name FROM cases ORDER BY created, name")]
        return [self.case(n) for n in names]

    def save_envelopes(self, policy: Policy, envelopes: dict[str, list[dict[str, Any]]]) -> None:
        """Store every envelope sealed to the reporter's own box key (the owner of this home);
        only the public key is needed, so no passphrase."""
        with self.tx():
            for holder, envs in envelopes.items():
                for env in envs:
                    self.db["envelopes"].insert(
                        {
                            "case_id": policy.case_id,
                            "policy_hash": policy.hash,
                            "holder": holder,
                            "recipient": env["body"]["recipient"],
                            "envelope": _seal_envelope(env, policy.reporter.box_pk),
                        },
                        replace=True,
                    )

    def envelopes_of(self, policy: Policy, box_key: PrivateKey) -> dict[str, list[dict[str, Any]]]:
        """holder id -> its envelopes (one per recipient) for this version of the policy,
        opened with the owner's box key (an unlocked identity's `box_key`)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for holder, env in self.db.execute(
            "SELECT holder, envelope FROM envelopes WHERE case_id = ? AND policy_hash = ?"
            " ORDER BY holder, recipient",
            [policy.case_id, policy.hash],
        ):
            out.setdefault(holder, []).append(_open_envelope(env, box_key))
        return out

    def replace_policy(self, name: str, policy: Policy, sealed_secrets: str) -> None:
        """A rotation: the case keeps its id and name; new policy, new deposit secrets, and a
        file cache emptied so no new snapshot reuses a chunk encrypted to the old key."""
        with self.tx():
            # The replaced version is kept (signed, public to the case's parties): nodes that
            # missed the rotation still hold it, and heartbeats in their form and the chain of
            # replacements that brings them up to date are made from it (docs/format.md §8).
            self.db.execute(
                "INSERT OR IGNORE INTO policy_history (case_id, policy_hash, policy)"
                " SELECT case_id, policy_hash, policy FROM cases WHERE name = ?",
                [name],
            )
            self.db.execute(
                "UPDATE cases SET policy = ?, policy_hash = ?, secrets = ? WHERE name = ?",
                [json.dumps(policy.doc), policy.hash, sealed_secrets, name],
            )
            self.db.execute("DELETE FROM filecache WHERE case_id = ?", [policy.case_id])

    def policy_history(self, policy: Policy) -> list[Policy]:
        """The versions `policy` replaced, newest first, following its `replaces` chain through
        the kept versions (stops at the first one this laptop does not have)."""
        out: list[Policy] = []
        want = policy.replaces
        while want is not None and len(out) < 256:
            row = self.db.execute(
                "SELECT policy FROM policy_history WHERE case_id = ? AND policy_hash = ?",
                [policy.case_id, want],
            ).fetchone()
            if row is None:
                break
            p = parse_policy(parse_json(row[0], "stored policy"), policy.reporter.sign_pk)
            out.append(p)
            want = p.replaces
        return out

    def forget_envelopes(self, policy: Policy) -> None:
        with self.tx():
            self.db.execute(
                "DELETE FROM envelopes WHERE case_id = ? AND policy_hash = ?",
                [policy.case_id, policy.hash],
            )

    def set_case_status(self, case_id: str, status: str) -> None:
        with self.tx():
            self.db.execute("UPDATE cases SET status = ? WHERE case_id = ?", [status, case_id])

    def set_case_extra(self, case_id: str, key: str, value: Any) -> None:
        """Set one key of the case's `extra` JSON (e.g. "release", vault/released.py)."""
        with self.tx():
            row = self.db.execute("SELECT extra FROM cases WHERE case_id = ?", [case_id]).fetchone()
            if row is None:
                return
            extra = json.loads(row[0] or "{}")
            extra[key] = value
            self.db.execute(
                "UPDATE cases SET extra = ? WHERE case_id = ?", [json.dumps(extra), case_id]
            )

    # --- the switch: node registrations, heartbeat sequence, queue, last known views ---------
    # Tables of docs/format.md §8 added for issue 4; none holds anything a captor can use to
    # check in (queued heartbeats are already signed and carry their own time).

    def set_node_reg(
        self, policy: Policy, node: Card, state: str, detail: str | None, now: int
    ) -> None:
        with self.tx():
            self.db.execute(
                "INSERT OR REPLACE INTO node_regs (case_id, policy_hash, node, card, state,"
                " detail, updated) VALUES (?,?,?,?,?,?,?)",
                [policy.case_id, policy.hash, node.fingerprint, node.text, state, detail, now],
            )

    def node_regs(self, policy: Policy) -> dict[str, tuple[str, str | None]]:
        """node fingerprint -> (state, detail) for this version of the policy."""
        rows = self.db.execute(
            "SELECT node, state, detail FROM node_regs WHERE case_id = ? AND policy_hash = ?",
            [policy.case_id, policy.hash],
        )
        got = {node: (st, detail) for node, st, detail in rows}
        order = [c.fingerprint for c in policy.nodes]  # the policy's order, for stable output
        return {
            fp: got[fp]
            for fp in sorted(
                got, key=lambda f: (f not in order, order.index(f) if f in order else 0, f)
            )
        }

    def registered_under_other_versions(self, policy: Policy) -> set[str]:
        """Fingerprints of nodes registered under some other version of the case than `policy`
        (rows kept even when that version's document is not, e.g. a rotation made before the
        laptop kept `policy_history`)."""
        rows = self.db.execute(
            "SELECT DISTINCT node FROM node_regs WHERE case_id = ? AND policy_hash != ?"
            " AND state = 'registered'",
            [policy.case_id, policy.hash],
        )
        return {r[0] for r in rows}

    def next_heartbeat_seq(self, case_id: str, now: int) -> int:
        """Allocate the next heartbeat sequence number and make it durable before it is used.

        max(last + 1, now): strictly increasing, and still ahead of what the nodes have seen if
        this state is restored from an old backup (the clock has moved on since)."""
        with self.tx():
            row = self.db.execute("SELECT seq FROM hb_seq WHERE case_id = ?", [case_id]).fetchone()
            seq = max((row[0] if row else 0) + 1, now)
            self.db.execute(
                "INSERT OR REPLACE INTO hb_seq (case_id, seq) VALUES (?, ?)", [case_id, seq]
            )
        return int(seq)

    def queue_heartbeat(
        self, case_id: str, node: str, heartbeat: dict[str, Any], tickets: list[Any], now: int
    ) -> None:
        """Queue a signed heartbeat for one node; a newer one replaces an older one."""
        seq = heartbeat["body"]["seq"]
        with self.tx():
            row = self.db.execute(
                "SELECT seq FROM hb_queue WHERE case_id = ? AND node = ?", [case_id, node]
            ).fetchone()
            if row is not None and row[0] >= seq:
                return
            self.db.execute(
                "INSERT OR REPLACE INTO hb_queue (case_id, node, seq, heartbeat, tickets, created,"
                " attempts, last_error) VALUES (?,?,?,?,?,?,0,NULL)",
                [case_id, node, seq, json.dumps(heartbeat), json.dumps(tickets), now],
            )

    def queued_heartbeats(self) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM hb_queue ORDER BY case_id, node")
        return [
            dict(r, heartbeat=json.loads(r["heartbeat"]), tickets=json.loads(r["tickets"]))
            for r in rows
        ]

    def update_queued(
        self, case_id: str, node: str, seq: int, tickets: list[Any], error: str | None
    ) -> None:
        with self.tx():
            self.db.execute(
                "UPDATE hb_queue SET tickets = ?, attempts = attempts + 1, last_error = ?"
                " WHERE case_id = ? AND node = ? AND seq = ?",
                [json.dumps(tickets), error, case_id, node, seq],
            )

    def unqueue(self, case_id: str, node: str, up_to_seq: int | None = None) -> None:
        with self.tx():
            if up_to_seq is None:
                self.db.execute(
                    "DELETE FROM hb_queue WHERE case_id = ? AND node = ?", [case_id, node]
                )
            else:
                self.db.execute(
                    "DELETE FROM hb_queue WHERE case_id = ? AND node = ? AND seq <= ?",
                    [case_id, node, up_to_seq],
                )

    def record_view(self, case_id: str, node: str, body: dict[str, Any]) -> None:
        """Remember what a node last said (signed receipt or status) for the agent's reminders."""
        with self.tx():
            old = self.db.execute(
                "SELECT time FROM node_views WHERE case_id = ? AND node = ?", [case_id, node]
            ).fetchone()
            if old is not None and old[0] > body.get("time", 0):
                return
            self.db.execute(
                "INSERT OR REPLACE INTO node_views (case_id, node, state, seq, deadline,"
                " release_at, paused_until, time) VALUES (?,?,?,?,?,?,?,?)",
                [
                    case_id,
                    node,
                    str(body.get("state")),
                    int(body.get("seq") or 0),
                    body.get("deadline"),
                    body.get("release_at"),
                    body.get("paused_until"),
                    int(body.get("time") or 0),
                ],
            )

    def remind_once(self, case_id: str, deadline: int, offset: int, now: int) -> bool:
        """True the first time (case, deadline, offset) is seen: the agent reminds once each."""
        with self.tx():
            cur = self.db.execute(
                "INSERT OR IGNORE INTO reminders (case_id, deadline, offset, sent)"
                " VALUES (?,?,?,?)",
                [case_id, deadline, offset, now],
            )
        return cur.rowcount == 1

    def node_views(self, case_id: str) -> list[dict[str, Any]]:
        return list(
            self.db.query("SELECT * FROM node_views WHERE case_id = ? ORDER BY node", [case_id])
        )

    # --- snapshots and objects -------------------------------------------------------------
    def last_snapshot(self, case_id: str) -> dict[str, Any] | None:
        rows = list(
            self.db.query(
                "SELECT * FROM snapshots WHERE case_id = ? ORDER BY seq DESC LIMIT 1", [case_id]
            )
        )
        return rows[0] if rows else None

    def snapshots(self, case_id: str) -> list[dict[str, Any]]:
        return list(
            self.db.query("SELECT * FROM snapshots WHERE case_id = ? ORDER BY seq", [case_id])
        )

    def known_object(self, case_id: str, oid: str) -> bool:
        """Whether every store holds the chunk `oid`: as an object of its own, or in a pack the
        index knows (format.md §6.3 "Packs", §8). A chunk whose pack was forgotten is not."""
        return (
            self.db.execute(
                "SELECT 1 FROM known WHERE case_id = ? AND oid = ?", [case_id, oid]
            ).fetchone()
            is not None
        )

    def objects(self, case_id: str) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT oid, csize, chash FROM objects WHERE case_id = ? ORDER BY oid", [case_id]
            )
        )


def _seal_envelope(env: dict[str, Any], box_pk: bytes) -> str:
    return SEALED_ENVELOPE + b64e(SealedBox(PublicKey(box_pk)).encrypt(canonical_json(env)))


def _open_envelope(stored: str, box_key: PrivateKey) -> dict[str, Any]:
    if not stored.startswith(SEALED_ENVELOPE):
        raise FormatError(N_("a stored envelope is not sealed (the local state is damaged)"))
    try:
        plain = SealedBox(box_key).decrypt(b64d(stored[len(SEALED_ENVELOPE) :], "envelope"))
    except CryptoError as exc:
        raise AuthenticationError(
            N_("this case's envelopes do not open with this identity"),
            hint=N_("check --home: this case belongs to another identity"),
        ) from exc
    value = parse_json(plain, "stored envelope")
    if not isinstance(value, dict):
        raise FormatError(
            N_("a stored envelope is damaged"),
            hint=N_("restore the Velador folder from your backup"),
        )
    return value


def seal_to_self(secrets: dict[str, Any], box_pk: bytes) -> str:
    return b64e(SealedBox(PublicKey(box_pk)).encrypt(canonical_json(secrets)))


def open_sealed(sealed: str, box_key: PrivateKey) -> dict[str, Any]:
    try:
        plain = SealedBox(box_key).decrypt(b64d(sealed, "case secrets"))
    except CryptoError as exc:
        raise AuthenticationError(
            N_("this case's local secrets do not open with this identity"),
            hint=N_("check --home: this case belongs to another identity"),
        ) from exc
    value = parse_json(plain, "case secrets")
    if not isinstance(value, dict):
        raise FormatError(
            N_("case secrets are damaged"), hint=N_("restore the Velador folder from your backup")
        )
    return value
