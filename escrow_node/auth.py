"""Checking signed HTTP requests (docs/protocol.md §2), the node half.

The client half (signing, and the constants both sides share) is vault/nodeproto/auth.py.

Every request except GET /v1/health, /v1/card, /v1/openapi.json and /metrics carries

    Authorization: Velador <base64url(canonical_json(signed "request" document))>

whose body is

    {"v": 1, "method": "POST", "path": "/v1/cases/ID/heartbeat", "query": "",
     "body": hex(BLAKE2b-256(raw HTTP body)), "time": unix seconds, "nonce": b64(16 random bytes),
     "node": b64(the target node's Ed25519 key), "case_id": "ID" | null}

The `node` field binds the request to one node, so a request seen by node A cannot be replayed
at node B. A node refuses times more than TOLERANCE seconds from its clock and any (signer, nonce)
pair it has accepted inside the window (the nonce cache is persisted in the database).
"""

from __future__ import annotations

import hmac
import sqlite3
from dataclasses import dataclass
from typing import Any

from vault.encoding import b64d, b64e, parse_json, require
from vault.errors import AuthenticationError, FormatError
from vault.nodeproto.auth import MAX_HEADER, NONCE_BYTES, SCHEME, TOLERANCE, body_hash
from vault.signing import signer_of, verify_document

from .errors import Replay, Unauthenticated


@dataclass(frozen=True)
class SignedRequest:
    signer: bytes
    nonce: str
    time: int
    case_id: str | None

    @property
    def signer_b64(self) -> str:
        return b64e(self.signer)


def verify_request(
    header: str | None,
    method: str,
    path: str,
    query: str,
    body: bytes,
    node_pk: bytes,
    now: int,
    tolerance: int = TOLERANCE,
) -> SignedRequest:
    """Check signature and binding (no database access); raises Unauthenticated."""
    if not header:
        raise Unauthenticated("this request must be signed (Authorization: Velador ...)")
    if len(header) > MAX_HEADER or not header.startswith(SCHEME + " "):
        raise Unauthenticated("the Authorization header is not a Velador signature")
    try:
        doc = parse_json(b64d(header[len(SCHEME) + 1 :], "request signature"), "request signature")
        body_doc = verify_document(doc, "request", what="request signature")
        if require(body_doc, "v", int, "request") != 1:
            raise FormatError("unsupported request signature version")
        fields: dict[str, Any] = {
            "method": method.upper(),
            "path": path,
            "query": query,
            "body": body_hash(body),
            "node": b64e(node_pk),
        }
        for key, want in fields.items():
            got = require(body_doc, key, str, "request")
            # Bytes, not str: compare_digest refuses non-ASCII strings with a TypeError (a 500).
            if not hmac.compare_digest(
                got.encode("utf-8", "surrogatepass"), want.encode("utf-8", "surrogatepass")
            ):
                raise AuthenticationError(f"the request signature does not cover this {key}")
        t = require(body_doc, "time", int, "request")
        nonce = require(body_doc, "nonce", str, "request")
        b64d(nonce, "request nonce", NONCE_BYTES)
        case_id = body_doc.get("case_id")
        if case_id is not None and not isinstance(case_id, str):
            raise FormatError("request case_id must be a string or null")
        if set(body_doc) != {"v", "time", "nonce", "case_id", *fields}:
            raise FormatError("request signature has unexpected fields")
    except (FormatError, AuthenticationError) as exc:
        raise Unauthenticated(f"bad request signature: {exc}") from exc
    if abs(now - t) > tolerance:
        raise Unauthenticated(
            f"request timestamp is {now - t:+d} s off the node's clock (tolerance {tolerance} s)",
            hint="check the clock of the sending machine",
        )
    return SignedRequest(signer_of(doc), nonce, t, case_id)


def consume_nonce(conn: sqlite3.Connection, req: SignedRequest, tolerance: int = TOLERANCE) -> None:
    """Record the nonce inside the caller's transaction; a second use raises Replay."""
    try:
        conn.execute(
            "INSERT INTO nonces (signer, nonce, expires) VALUES (?, ?, ?)",
            (req.signer_b64, req.nonce, req.time + tolerance + 1),
        )
    except sqlite3.IntegrityError:
        raise Replay("this request was already received (replayed nonce)") from None


def prune_nonces(conn: sqlite3.Connection, now: int) -> int:
    return conn.execute("DELETE FROM nonces WHERE expires < ?", (now,)).rowcount
