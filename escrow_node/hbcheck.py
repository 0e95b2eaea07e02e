"""Checking a heartbeat request before its write (docs/protocol.md §2, §4.2).

Everything here only reads: the request signature, the body, the case's current policy (from
a read-only snapshot), the signer's role, the reporter's signature on the heartbeat and this
node's duress marker. It needs the node's public key and its box key (to open its duress
marker), never its signing key, so the same code runs in the serving process and in the
verification worker processes (verifier.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from nacl.public import PrivateKey

from vault.encoding import parse_json
from vault.errors import AuthenticationError, FormatError, VeladorError
from vault.nodeproto.messages import Heartbeat, check_heartbeat, read_duress
from vault.policy import Policy

from .auth import SignedRequest, verify_request
from .errors import BadRequest, Forbidden, no_case
from .policies import CachedPolicy, PolicyCache, roles_of


def parse_body(body: bytes, what: str) -> Any:
    """A JSON request body (empty means {}); malformed is a 400."""
    try:
        return parse_json(body, what) if body else {}
    except FormatError as exc:
        raise BadRequest(str(exc)) from exc


@dataclass(frozen=True)
class CheckedHeartbeat:
    """A heartbeat whose request and document were verified, ready to be written."""

    req: SignedRequest
    case_id: str
    policy: CachedPolicy
    roles: dict[str, str]
    hb: Heartbeat
    duress: bool
    hb_json: str
    """json.dumps(hb.doc): the stored text and the gossip payload."""


class HeartbeatChecker:
    def __init__(
        self,
        node_pk: bytes,
        fingerprint: str,
        box_key: PrivateKey,
        tolerance: int,
        policies: PolicyCache,
        snapshot: Callable[[], AbstractContextManager[sqlite3.Connection]],
    ) -> None:
        self.node_pk = node_pk
        self.fingerprint = fingerprint
        self._box_key = box_key
        self.tolerance = tolerance
        self.policies = policies
        self._snapshot = snapshot

    def authenticate(
        self, header: str | None, method: str, path: str, query: str, body: bytes, now: int
    ) -> SignedRequest:
        """The request signature (no rate limit: the serving process applies it)."""
        return verify_request(header, method, path, query, body, self.node_pk, now, self.tolerance)

    def examine(self, req: SignedRequest, case_id: str, body: bytes) -> CheckedHeartbeat:
        """Body, case, signer's role, reporter's signature and marker of an authenticated
        request. The write re-checks the policy version inside its transaction."""
        doc = parse_body(body, "heartbeat")
        with self._snapshot() as conn:
            policy = self.policies.current(conn, case_id)
            shown = _shown_policy(conn, policy, doc)
        roles = roles_of(policy, req.signer, self.node_pk)
        if not roles:
            raise no_case(case_id)  # a stranger gets the unknown-case answer (protocol §2.4)
        if not roles.keys() & {"reporter", "node"}:
            raise Forbidden("only the reporter or a peer node of the case may send heartbeats")
        hb, duress = self.verify(shown or policy, doc)
        hb_json = json.dumps(hb.doc)
        hb.hash  # noqa: B018 - a cached property; computing it here is the point
        return CheckedHeartbeat(req, case_id, policy, roles, hb, duress, hb_json)

    def verify(self, policy: Policy | ShownPolicy, doc: Any) -> tuple[Heartbeat, bool]:
        """The reporter's signature and this node's duress marker (no database)."""
        try:
            hb = check_heartbeat(doc, policy)  # type: ignore[arg-type]
        except AuthenticationError as exc:
            raise BadRequest(str(exc)) from exc
        return hb, read_duress(hb, self.fingerprint, self._box_key) is True


@dataclass(frozen=True)
class ShownPolicy:
    """The policy a rotation sent under duress named, which the node did not apply but shows
    the captor (cover.py, docs/protocol.md §4.4): a heartbeat the reporter signs over it is
    checked against it (same case, same reporter key)."""

    reporter: Any
    case_id: str
    hash: str


def _shown_policy(conn: sqlite3.Connection, policy: Policy, doc: Any) -> Any:
    body = doc.get("body") if isinstance(doc, dict) else None
    named = body.get("policy_hash") if isinstance(body, dict) else None
    if not isinstance(named, str) or named == policy.hash:
        return None
    row = conn.execute(
        "SELECT policy_hash FROM covers WHERE case_id = ?", (policy.case_id,)
    ).fetchone()
    if row is None or row[0] != named:
        return None
    return ShownPolicy(policy.reporter, policy.case_id, named)


@dataclass(frozen=True)
class Outcome:
    """What checking one heartbeat request gave: `req` is None when authentication failed;
    exactly one of `checked` and `error` is set."""

    req: SignedRequest | None
    checked: CheckedHeartbeat | None
    error: VeladorError | None
