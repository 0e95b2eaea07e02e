"""Signing requests to an escrow node (docs/protocol.md §2), the client half.

Every request except GET /v1/health, /v1/card and /v1/openapi.json carries

    Authorization: Velador <base64url(canonical_json(signed "request" document))>

whose body is

    {"v": 1, "method": "POST", "path": "/v1/cases/ID/heartbeat", "query": "",
     "body": hex(BLAKE2b-256(raw HTTP body)), "time": unix seconds, "nonce": b64(16 random bytes),
     "node": b64(the target node's Ed25519 key), "case_id": "ID" | null}

The `node` field binds the request to one node, so a request seen by node A cannot be replayed
at node B. The node's side (checking the signature, the time window and the nonce) is
escrow_node/auth.py; the constants both sides share are defined here, once.
"""

from __future__ import annotations

import hashlib
import secrets

from nacl.signing import SigningKey

from vault.encoding import b64e, canonical_json
from vault.signing import sign_document

SCHEME = "Velador"
TOLERANCE = 300
"""Seconds a request timestamp may differ from the node's clock."""
MAX_HEADER = 2048
NONCE_BYTES = 16


def body_hash(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=32).hexdigest()


def sign_request(
    key: SigningKey,
    node_pk: bytes,
    method: str,
    path: str,
    body: bytes,
    now: int,
    case_id: str | None = None,
    query: str = "",
) -> str:
    """The Authorization header value for one request."""
    doc = sign_document(
        "request",
        {
            "v": 1,
            "method": method.upper(),
            "path": path,
            "query": query,
            "body": body_hash(body),
            "time": now,
            "nonce": b64e(secrets.token_bytes(NONCE_BYTES)),
            "node": b64e(node_pk),
            "case_id": case_id,
        },
        key,
    )
    return f"{SCHEME} {b64e(canonical_json(doc))}"
