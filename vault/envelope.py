"""Share envelopes (docs/format.md §5.2).

For each share holder and each recipient outlet the reporter makes one envelope:

    inner  = signed "share" document {v, case_id, policy_hash, holder, group, member, mnemonic}
    sealed = X25519 sealed box of canonical_json(inner) to the recipient's box key
    outer  = signed "envelope" document {v, case_id, policy_hash, holder, recipient, sealed}

Both layers are signed by the reporter. A holder (a node, a USB stick) can check the outer
signature and the policy binding without being able to open anything; a recipient opens the
sealed box, checks the inner signature, and checks that both layers agree. A node that swaps,
alters or forges an envelope is caught by one of those checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey

from .cards import Card
from .encoding import b64d, b64e, canonical_json, parse_json, require
from .errors import N_, AuthenticationError, FormatError
from .policy import Holder, Policy
from .shares import check_mnemonic
from .signing import sign_document, verify_document

MAX_ENVELOPE_BYTES = 16 * 1024
_OUTER_FIELDS = {"v", "case_id", "policy_hash", "holder", "recipient", "sealed"}
_INNER_FIELDS = {"v", "case_id", "policy_hash", "holder", "group", "member", "mnemonic"}


def _only(body: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise FormatError(
            N_("%(what)s has an unknown field %(extra)r"), what=what, extra=extra[0][:40]
        )


@dataclass(frozen=True)
class OpenedShare:
    holder: str
    group: int
    member: int
    mnemonic: str


def make_envelopes(
    policy: Policy, holder: Holder, mnemonic: str, key: SigningKey
) -> list[dict[str, Any]]:
    """One envelope per recipient for `holder`'s share."""
    inner_body = {
        "v": 1,
        "case_id": policy.case_id,
        "policy_hash": policy.hash,
        "holder": holder.id,
        "group": holder.group,
        "member": holder.member,
        "mnemonic": mnemonic,
    }
    inner = canonical_json(sign_document("share", inner_body, key))
    out = []
    for card in policy.recipients:
        sealed = SealedBox(PublicKey(card.box_pk)).encrypt(inner)
        body = {
            "v": 1,
            "case_id": policy.case_id,
            "policy_hash": policy.hash,
            "holder": holder.id,
            "recipient": card.fingerprint,
            "sealed": b64e(bytes(sealed)),
        }
        out.append(sign_document("envelope", body, key))
    return out


def check_envelope(env: Any, policy: Policy) -> dict[str, Any]:
    """Verify an envelope's outer layer against the policy; usable by anyone (nodes too)."""
    if isinstance(env, (bytes, str)):
        env = parse_json(env, "envelope", MAX_ENVELOPE_BYTES)
    body = verify_document(env, "envelope", policy.reporter.sign_pk, what="share envelope")
    if require(body, "v", int, "envelope") != 1:
        raise FormatError(N_("unsupported envelope version"))
    _only(body, _OUTER_FIELDS, "envelope")
    if require(body, "case_id", str, "envelope") != policy.case_id:
        raise FormatError(N_("envelope belongs to another case"))
    if require(body, "policy_hash", str, "envelope") != policy.hash:
        raise FormatError(N_("envelope belongs to another version of the case policy"))
    holder = require(body, "holder", str, "envelope")
    if holder not in {h.id for h in policy.holders}:
        raise FormatError(N_("envelope names a share holder the policy does not list"))
    if policy.recipient_by_fingerprint(require(body, "recipient", str, "envelope")) is None:
        raise FormatError(N_("envelope is addressed to someone the policy does not list"))
    require(body, "sealed", str, "envelope")
    return body


def open_envelope(env: Any, policy: Policy, box_key: PrivateKey) -> OpenedShare:
    """Open an envelope addressed to `box_key`, verifying both layers against the policy."""
    body = check_envelope(env, policy)
    sealed = b64d(body["sealed"], "sealed share")
    try:
        inner_raw = SealedBox(box_key).decrypt(sealed)
    except CryptoError as exc:
        raise AuthenticationError(
            N_("envelope cannot be opened with this identity"),
            hint=N_("check that you use the identity the case names as a recipient"),
        ) from exc
    inner = verify_document(
        parse_json(inner_raw, "sealed share", MAX_ENVELOPE_BYTES),
        "share",
        policy.reporter.sign_pk,
        what="sealed share",
    )
    # The inner layer is checked like the outer one: version first, then nothing unknown.
    if require(inner, "v", int, "sealed share") != 1:
        raise FormatError(N_("unsupported sealed share version"), hint=N_("upgrade velador"))
    _only(inner, _INNER_FIELDS, "sealed share")
    for key in ("case_id", "policy_hash", "holder"):
        if inner.get(key) != body[key]:
            raise AuthenticationError(
                N_("sealed share does not match its envelope (%(key)s)"),
                hint=N_("the envelope was altered; recover from another node"),
                key=key,
            )
    holder = next(h for h in policy.holders if h.id == body["holder"])
    group = require(inner, "group", int, "sealed share")
    member = require(inner, "member", int, "sealed share")
    if (group, member) != (holder.group, holder.member):
        raise AuthenticationError(
            N_("sealed share is not the share the policy assigns to its holder")
        )
    mnemonic = require(inner, "mnemonic", str, "sealed share")
    share = check_mnemonic(mnemonic)
    if (share.group_index, share.index) != (group, member):
        raise AuthenticationError(N_("sealed share's mnemonic does not match its slot"))
    return OpenedShare(holder.id, group, member, mnemonic)


def addressed_to(env: Any, card: Card) -> bool:
    body = env.get("body") if isinstance(env, dict) else None
    return isinstance(body, dict) and body.get("recipient") == card.fingerprint
