"""Signed documents (docs/format.md §1.3).

A signed document is the JSON object

    {"kind": KIND, "body": BODY, "signer": b64(ed25519 public key), "sig": b64(signature)}

where the signature covers SIG_LABELS[KIND] || 0x0A || canonical_json(BODY). The label binds the
signature to its kind, so a heartbeat signature can never pass as a policy signature.
"""

from __future__ import annotations

import hmac
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .constants import SIG_LABELS, SIG_LABELS_BY_VERSION
from .encoding import b64d, b64e, canonical_json, require
from .errors import N_, AuthenticationError, FormatError


def signed_bytes(kind: str, body: Any) -> bytes:
    try:
        label = SIG_LABELS[kind]
    except KeyError:
        raise ValueError(f"unknown signature kind {kind!r}") from None
    version = body.get("v") if isinstance(body, dict) else None
    if type(version) is int and (kind, version) in SIG_LABELS_BY_VERSION:
        label = SIG_LABELS_BY_VERSION[(kind, version)]  # format.md §1.2: labels name versions
    return label + b"\n" + canonical_json(body)


def sign_document(kind: str, body: Any, key: SigningKey) -> dict[str, Any]:
    """Sign `body` as a document of `kind` with `key`."""
    sig = key.sign(signed_bytes(kind, body)).signature
    return {
        "kind": kind,
        "body": body,
        "signer": b64e(bytes(key.verify_key)),
        "sig": b64e(sig),
    }


def verify_document(
    doc: Any, kind: str, expected_signer: bytes | None = None, what: str | None = None
) -> Any:
    """Check a signed document and return its body.

    `expected_signer` pins the key that must have signed; without it the document only proves it
    is self-consistent, and the caller must decide whether it trusts `doc["signer"]`.
    """
    what = what or kind
    if not isinstance(doc, dict):
        raise FormatError(N_("%(what)s is not a signed document"), what=what)
    if require(doc, "kind", str, what) != kind:
        raise FormatError(
            N_("%(what)s is a %(kind)r document, expected %(expected)r"),
            what=what,
            kind=doc["kind"],
            expected=kind,
        )
    if set(doc) != {"kind", "body", "signer", "sig"}:
        raise FormatError(N_("%(what)s has unexpected fields"), what=what)
    signer = b64d(require(doc, "signer", str, what), f"{what} signer", 32)
    sig = b64d(require(doc, "sig", str, what), f"{what} signature", 64)
    if expected_signer is not None and not hmac.compare_digest(signer, expected_signer):
        raise AuthenticationError(
            N_("%(what)s was signed by an unexpected key"),
            hint=N_("compare the fingerprints aloud with their owners before you trust it"),
            what=what,
        )
    try:
        VerifyKey(signer).verify(signed_bytes(kind, doc["body"]), sig)
    except RecursionError:
        raise FormatError(N_("%(what)s is nested too deeply"), what=what) from None
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise AuthenticationError(
            N_("%(what)s has an invalid signature"),
            hint=N_("the data was altered, or it was not made by who it claims; do not trust it"),
            what=what,
        ) from exc
    return doc["body"]


def signer_of(doc: dict[str, Any]) -> bytes:
    """The signer key of a document already checked by verify_document."""
    return b64d(doc["signer"], "signer", 32)
