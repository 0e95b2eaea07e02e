"""Contact cards and fingerprints (docs/format.md §2).

A contact card is one line: `velador:card:v1:` + base64url(canonical JSON of a signed "card"
document). Its body holds name, role, the Ed25519 and X25519 public keys and, for escrow nodes,
the node URL. The card is self-signed, so any change to any byte is detected; whether the keys
belong to the person is established by comparing the fingerprint aloud.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from .constants import CARD_PREFIX, FINGERPRINT_BYTES, FINGERPRINT_PERSON, ROLES
from .encoding import b64d, b64e, canonical_json, parse_json, require
from .errors import N_, AuthenticationError, FormatError
from .signing import sign_document, verify_document

MAX_CARD_CHARS = 4096
MAX_NAME_CHARS = 80


def fingerprint(sign_pk: bytes, box_pk: bytes) -> str:
    """16 base32 characters in four groups, short enough to read over a phone line."""
    digest = hashlib.blake2b(
        sign_pk + box_pk, digest_size=FINGERPRINT_BYTES, person=FINGERPRINT_PERSON
    ).digest()
    text = base64.b32encode(digest).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True)
class Card:
    name: str
    role: str
    sign_pk: bytes
    box_pk: bytes
    created: int
    url: str | None
    text: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.sign_pk, self.box_pk)

    def __str__(self) -> str:
        return self.text


def check_name(name: str) -> str:
    name = unicodedata.normalize("NFC", name).strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise FormatError(N_("a name must have 1 to %(limit)s characters"), limit=MAX_NAME_CHARS)
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise FormatError(N_("a name must not contain control characters"))
    return name


def make_card(
    name: str,
    role: str,
    sign_key: SigningKey,
    box_pk: bytes,
    created: int,
    url: str | None = None,
) -> Card:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    body: dict[str, Any] = {
        "v": 1,
        "name": check_name(name),
        "role": role,
        "sign": b64e(bytes(sign_key.verify_key)),
        "box": b64e(box_pk),
        "created": created,
    }
    if url is not None:
        body["url"] = url
    doc = sign_document("card", body, sign_key)
    text = CARD_PREFIX + b64e(canonical_json(doc))
    return parse_card(text)


_BAD = N_("this contact card is malformed or has been altered")
_HINT = N_("ask its owner to send it again, and compare the fingerprint aloud")


def parse_card(text: str) -> Card:
    """Parse and verify a contact card from untrusted input.

    Verified cards are remembered by their exact text: a node re-reads the same policy cards on
    every heartbeat and sweep, and a card's validity depends only on its text (no clock, no
    revocation list). Refusals are not cached, so hostile input cannot fill the cache.
    """
    if not isinstance(text, str):
        raise FormatError(_BAD, hint=_HINT)
    return _parse_stripped(text.strip())


@functools.lru_cache(maxsize=4096)
def _parse_stripped(text: str) -> Card:
    bad, hint = _BAD, _HINT
    if len(text) > MAX_CARD_CHARS or not text.startswith(CARD_PREFIX):
        raise FormatError(bad, hint=hint)
    try:
        raw = b64d(text[len(CARD_PREFIX) :], "contact card")
        doc = parse_json(raw, "contact card")
        body = verify_document(doc, "card", what="contact card")
        if require(body, "v", int, "contact card") != 1:
            raise FormatError(N_("unsupported contact card version"))
        sign_pk = b64d(require(body, "sign", str, "card"), "card signing key", 32)
        box_pk = b64d(require(body, "box", str, "card"), "card box key", 32)
        role = require(body, "role", str, "card")
        if role not in ROLES:
            raise FormatError(N_("unknown role"))
        name = require(body, "name", str, "card")
        if check_name(name) != name:
            raise FormatError(N_("name not normalized"))
        url = body.get("url")
        if url is not None and (
            not isinstance(url, str) or not url.startswith(("http://", "https://"))
        ):
            raise FormatError(N_("card URL must be http(s)"))
        allowed = {"v", "name", "role", "sign", "box", "created", "url"}
        if set(body) - allowed:
            raise FormatError(N_("card has unknown fields"))
        created = require(body, "created", int, "card")
        # The self-signature must be by the key the card announces.
        if doc["signer"] != body["sign"]:
            raise AuthenticationError(N_("card is not signed by its own key"))
        # Re-encoding must give the same text: one card, one spelling.
        if CARD_PREFIX + b64e(canonical_json(doc)) != text:
            raise FormatError(N_("card is not canonically encoded"))
    except (FormatError, AuthenticationError) as exc:
        raise FormatError(bad, hint=hint) from exc
    return Card(name, role, sign_pk, box_pk, created, url, text)
