"""Verified case policies kept in memory, and who signs in which role (docs/protocol.md §3).

Shared by the serving process (NodeService) and the heartbeat verification workers
(verifier.py): both look policies up by case and verify each policy version once.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import threading
from collections import OrderedDict

from vault.cards import Card
from vault.encoding import doc_hash
from vault.policy import Policy, parse_policy

from .engine import Rules
from .errors import no_case

POLICY_CACHE = 4096
"""Parsed policies kept in memory (LRU), keyed by policy hash."""


class CachedPolicy(Policy):
    """A verified policy with what every heartbeat derives from it computed once: its hash, its
    nodes, its switch rules and who signs in which role. Immutable (frozen, and its document is
    never changed), so caching under the policy hash cannot serve a stale view: a rotated
    policy has another hash and is parsed and verified afresh."""

    @functools.cached_property
    def hash(self) -> str:  # type: ignore[override]
        return doc_hash(self.doc)

    @functools.cached_property
    def nodes(self) -> tuple[Card, ...]:  # type: ignore[override]
        return Policy.nodes.fget(self)  # type: ignore[attr-defined,no-any-return]

    @functools.cached_property
    def rules(self) -> Rules:
        assert self.switch is not None
        return Rules.from_switch(self.switch)

    @functools.cached_property
    def signers(self) -> dict[bytes, tuple[tuple[str, str], ...]]:
        """signer key -> ((role, fingerprint of its card in that role), ...), in the order
        NodeService.roles used to check them (a later card of the same role wins)."""
        out: dict[bytes, list[tuple[str, str]]] = {}
        cards: list[tuple[str, Card]] = [("reporter", self.reporter)]
        if self.switch:
            cards += [("editor", c) for c in self.switch.editors]
        cards += [("recipient", c) for c in self.recipients]
        cards += [("node", c) for c in self.nodes]
        for role, c in cards:
            out.setdefault(c.sign_pk, []).append((role, c.fingerprint))
        return {k: tuple(v) for k, v in out.items()}


def cached_policy(p: Policy) -> CachedPolicy:
    return CachedPolicy(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)})


def roles_of(policy: Policy, signer: bytes, own_pk: bytes) -> dict[str, str]:
    """role -> fingerprint of the signer's card in that role; this node itself has none."""
    if not isinstance(policy, CachedPolicy):
        policy = cached_policy(policy)
    out: dict[str, str] = {}
    # An exact lookup of a public key (not a secret: no constant-time comparison needed).
    for role, fp in policy.signers.get(signer, ()):
        if role == "node" and signer == own_pk:
            continue
        out[role] = fp
    return out


class PolicyCache:
    """Parsed and verified policies (LRU), keyed by the hash of the verified document itself,
    so an entry can only ever be returned for exactly that document: a rotation stores a new
    hash in the row and the next lookup misses, whatever process or code path changed it."""

    def __init__(self, size: int = POLICY_CACHE) -> None:
        self._size = size
        self._policies: OrderedDict[str, CachedPolicy] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, policy_hash: str) -> CachedPolicy | None:
        with self._lock:
            p = self._policies.get(policy_hash)
            if p is not None:
                self._policies.move_to_end(policy_hash)
            return p

    def of_row(self, row: sqlite3.Row) -> CachedPolicy:
        """A case row's policy (needs its policy_hash and policy columns)."""
        p = self.get(row["policy_hash"])
        if p is not None:
            return p
        p = cached_policy(parse_policy(json.loads(row["policy"])))
        with self._lock:
            self._policies[p.hash] = p
            while len(self._policies) > self._size:
                self._policies.popitem(last=False)
        return p

    def current(self, conn: sqlite3.Connection, case_id: str) -> CachedPolicy:
        """The case's current policy, reading only its hash when the policy is cached (the
        heartbeat path: a SELECT * copied the whole policy text out of SQLite every time)."""
        row = conn.execute("SELECT policy_hash FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise no_case(case_id)
        p = self.get(row[0])
        if p is not None:
            return p
        row = conn.execute(
            "SELECT policy_hash, policy FROM cases WHERE case_id = ?", (case_id,)
        ).fetchone()
        if row is None:
            raise no_case(case_id)
        return self.of_row(row)
