"""Reporter heartbeats and node answers (docs/protocol.md §3, §4).

Heartbeat: a reporter-signed document of kind "heartbeat" with body

    {"v": 1, "case_id", "policy_hash", "seq": int > 0, strictly increasing, "time": unix seconds,
     "markers": {node fingerprint: b64(SealedBox(node box key).encrypt(32 bytes))}}

Each marker's first byte is 0 (normal) or 1 (duress), the other 31 bytes random. A sealed box is
randomised, so markers of normal and duress heartbeats are the same size and indistinguishable to
everyone except the node that can open its own marker. Every node of the case gets a marker, so
a heartbeat forwarded between peers (gossip) carries each node's signal intact.

The reporter's other requests to a node (status, pause, resume, destroy, release-now, object,
registration) carry one marker of the same form for that node, always, so that a captor's
forced action raises the same silent alarm as a duress check-in (docs/protocol.md §3.2).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey

from vault.encoding import b64d, b64e, canonical_json, require
from vault.errors import N_, FormatError
from vault.policy import Policy
from vault.signing import sign_document, verify_document

MARKER_BYTES = 32
SEALED_MARKER_BYTES = MARKER_BYTES + 48
"""A sealed box adds an ephemeral X25519 key (32) and a Poly1305 tag (16)."""
CUSTODY_LABEL = b"velador/v1/custody-digest\n"
_HEX = frozenset("0123456789abcdef")


def make_marker(box_pk: bytes, duress: bool) -> str:
    """A duress marker sealed to one node's box key (docs/protocol.md §3.2)."""
    plain = bytes([1 if duress else 0]) + secrets.token_bytes(MARKER_BYTES - 1)
    return b64e(bytes(SealedBox(PublicKey(box_pk)).encrypt(plain)))


_marker = make_marker


def make_heartbeat(
    policy: Policy, sign_key: SigningKey, seq: int, now: int, duress: bool = False
) -> dict[str, Any]:
    """The signed heartbeat the reporter sends to every node of the case."""
    if seq <= 0:
        raise ValueError("heartbeat sequence numbers start at 1")
    markers = {card.fingerprint: _marker(card.box_pk, duress) for card in policy.nodes}
    body = {
        "v": 1,
        "case_id": policy.case_id,
        "policy_hash": policy.hash,
        "seq": seq,
        "time": now,
        "markers": markers,
    }
    return sign_document("heartbeat", body, sign_key)


@dataclass(frozen=True)
class Heartbeat:
    seq: int
    time: int
    markers: dict[str, str]
    doc: dict[str, Any]

    @property
    def policy_hash(self) -> str:
        """The policy version the reporter signed it under (may differ from the node's)."""
        return str(self.doc["body"]["policy_hash"])

    @functools.cached_property
    def hash(self) -> str:
        # Cached: the audit entry, the receipt and gossip all name the heartbeat by it.
        return hashlib.blake2b(canonical_json(self.doc), digest_size=32).hexdigest()


def check_heartbeat(doc: Any, policy: Policy) -> Heartbeat:
    """Verify a heartbeat against the case policy this node holds (docs/protocol.md §3.1).

    Proof of life is the reporter's signature on a heartbeat for this case id, checked with the
    reporter key of `policy`; the policy version the heartbeat names is NOT required to be
    `policy`'s. A rotation that missed this node (it was down, or was restored from a backup
    taken before the rotation) must not make it refuse every later heartbeat and release the
    old key while the reporter checks in (issue 11, finding 2). A rotation never changes the
    reporter key (§4.1), and replays are stopped as before: request nonces and the strictly
    increasing sequence number."""
    body = verify_document(doc, "heartbeat", policy.reporter.sign_pk, what="heartbeat")
    if require(body, "v", int, "heartbeat") != 1:
        raise FormatError(N_("unsupported heartbeat version"))
    if require(body, "case_id", str, "heartbeat") != policy.case_id:
        raise FormatError(N_("heartbeat belongs to another case"))
    named = require(body, "policy_hash", str, "heartbeat")
    if len(named) != 64 or not set(named) <= _HEX:
        raise FormatError(N_("heartbeat policy_hash must be 64 lowercase hex characters"))
    seq = require(body, "seq", int, "heartbeat")
    t = require(body, "time", int, "heartbeat")
    if not (0 < seq < 2**62 and 0 <= t < 2**40):
        raise FormatError(N_("heartbeat seq or time out of range"))
    markers = require(body, "markers", dict, "heartbeat")
    if len(markers) > 64 or not all(isinstance(v, str) and len(v) < 200 for v in markers.values()):
        raise FormatError(N_("heartbeat markers are malformed"))
    if set(body) != {"v", "case_id", "policy_hash", "seq", "time", "markers"}:
        raise FormatError(N_("heartbeat has unexpected fields"))
    return Heartbeat(seq, t, dict(markers), doc)


def read_duress(hb: Heartbeat, fingerprint: str, box_key: PrivateKey) -> bool | None:
    """This node's marker: True duress, False normal, None missing or unreadable."""
    return open_marker(hb.markers.get(fingerprint), box_key)


def open_marker(sealed: Any, box_key: PrivateKey) -> bool | None:
    """A marker from untrusted input: True duress, False normal, None missing or unreadable."""
    if not isinstance(sealed, str) or len(sealed) > 200:
        return None
    try:
        plain = SealedBox(box_key).decrypt(b64d(sealed, "marker"))
    except (CryptoError, FormatError):
        return None
    if len(plain) != MARKER_BYTES:
        return None
    return plain[0] == 1


def custody_digest(nonce: bytes, envelopes: list[dict[str, Any]]) -> str:
    """hex BLAKE2b-256(label || nonce || canonical_json(envelopes by (holder, recipient)))."""
    ordered = sorted(envelopes, key=lambda e: (e["body"]["holder"], e["body"]["recipient"]))
    h = hashlib.blake2b(digest_size=32)
    h.update(CUSTODY_LABEL)
    h.update(nonce)
    h.update(canonical_json(ordered))
    return h.hexdigest()


# --- drills (docs/protocol.md §11) ---------------------------------------------------------------

DRILL_CHALLENGE_BYTES = 32
DRILL_DIGEST_LABEL = b"velador/v1/drill-challenge\n"
DRILL_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
MAX_DRILL_ID = 40
SUPPORTED_FORMATS = {"protocol": [1], "policy": [1], "envelope": [1], "snapshot": [1], "card": [1]}
"""The versions of each format this software reads: a drill answer says so (proof 4, §11.3)."""
_ANSWER_FIELDS = {
    "v",
    "case_id",
    "drill",
    "node",
    "role",
    "time",
    "proof",
    "reached",
    "stores",
    "software",
}


def check_drill_id(value: Any) -> str:
    """A drill id: 1 to 40 characters of a-z, 0-9 and '-', not starting with '-'."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_DRILL_ID
        or not set(value) <= DRILL_ID_CHARS
        or value.startswith("-")
    ):
        raise FormatError(N_("a drill id is 1 to 40 characters of a-z, 0-9 and '-'"))
    return value


def new_drill_id() -> str:
    """A fresh id for a drill the reporter starts (scheduled ones are `s{n}`, §11.1)."""
    return "d" + secrets.token_hex(8)


def drill_digest(challenge: bytes) -> str:
    """What a node keeps of a challenge: hex BLAKE2b-256(label || challenge)."""
    return hashlib.blake2b(DRILL_DIGEST_LABEL + challenge, digest_size=32).hexdigest()


def make_drill_request(
    sign_key: SigningKey, case_id: str, drill: str, node: str, challenge: str, now: int
) -> dict[str, Any]:
    """An editor's drill-only release request (§11.4): signed under its own label
    (`velador/v1/drill-request`), so it can never be taken for a request (`velador/v1/request`)
    and never counts toward a real quorum."""
    body = {
        "v": 1,
        "case_id": case_id,
        "drill": drill,
        "node": node,
        "challenge": challenge,
        "time": now,
    }
    return sign_document("drill-request", body, sign_key)


def make_drill_answer(
    sign_key: SigningKey,
    *,
    case_id: str,
    drill: str,
    node: str,
    role: str,
    proof: Any,
    reached: list[str],
    stores: dict[str, int] | None,
    version: str,
    now: int,
) -> dict[str, Any]:
    """A recipient's or editor's answer to one node's drill challenge (§11.3)."""
    body = {
        "v": 1,
        "case_id": case_id,
        "drill": drill,
        "node": node,
        "role": role,
        "time": now,
        "proof": proof,
        "reached": sorted(set(reached)),
        "stores": stores,
        "software": {"version": version, "formats": SUPPORTED_FORMATS},
    }
    return sign_document("drill-answer", body, sign_key)


def check_drill_answer(doc: Any, signer: bytes) -> dict[str, Any]:
    """Verify an answer's signature and shape (not its proofs: the node judges those)."""
    body = verify_document(doc, "drill-answer", signer, what="drill answer")
    if require(body, "v", int, "drill answer") != 1:
        raise FormatError(N_("unsupported drill answer version"))
    if set(body) != _ANSWER_FIELDS:
        raise FormatError(N_("drill answer has missing or unexpected fields"))
    require(body, "case_id", str, "drill answer")
    check_drill_id(body["drill"])
    require(body, "node", str, "drill answer")
    if body["role"] not in ("recipient", "editor"):
        raise FormatError(N_("drill answer role must be recipient or editor"))
    if not isinstance(body["time"], int) or isinstance(body["time"], bool):
        raise FormatError(N_("drill answer time must be an integer"))
    reached = body["reached"]
    if not isinstance(reached, list) or len(reached) > 64:
        raise FormatError(N_("drill answer 'reached' must be a list of at most 64 nodes"))
    if not all(isinstance(r, str) and len(r) < 64 for r in reached):
        raise FormatError(N_("drill answer 'reached' must list node fingerprints"))
    stores = body["stores"]
    if stores is not None and not (
        isinstance(stores, dict)
        and set(stores) == {"checked", "ok"}
        and all(isinstance(v, int) and 0 <= v < 1000 for v in stores.values())
    ):
        raise FormatError(N_("drill answer 'stores' must be {checked, ok} or null"))
    sw = body["software"]
    if not (
        isinstance(sw, dict)
        and set(sw) == {"version", "formats"}
        and isinstance(sw["version"], str)
        and len(sw["version"]) <= 32
        and isinstance(sw["formats"], dict)
        and len(sw["formats"]) <= 32
    ):
        raise FormatError(N_("drill answer 'software' is malformed"))
    return body  # type: ignore[no-any-return]


def formats_current(formats: Any) -> bool:
    """Proof 4: the answering software reads every format version this case uses."""
    if not isinstance(formats, dict):
        return False
    for name, versions in SUPPORTED_FORMATS.items():
        have = formats.get(name)
        if not isinstance(have, list) or not set(versions) <= set(have):
            return False
    return True
