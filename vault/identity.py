"""Identities at rest (docs/format.md §3).

An identity is an Ed25519 signing key and an X25519 box key. The private halves are stored in
`identity.json` (mode 0600) under one of two *slots*, each sealed with a key derived from a
passphrase by Argon2id (nacl.pwhash) and encrypted with SecretBox (XSalsa20-Poly1305).

Two slots always exist. Until the reporter sets a duress passphrase the second slot is random
filler of the same shape, so a captor who reads the file cannot tell whether a duress passphrase
exists. Unlocking always runs the KDF for both slots so the time taken does not say which slot
opened.

Passphrases reach the KDF in Unicode NFC, UTF-8 encoded (format.md §3.1, vault/passphrase.py), so
an identity made with decomposed accents opens with composed ones; unlocking also tries the raw
and NFD forms, which opens identities sealed before normalization.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.pwhash
import nacl.secret
import nacl.utils
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from .cards import Card, make_card
from .constants import (
    IDENTITY_KIND,
    IDENTITY_SLOTS,
    INSECURE_FAST_KDF_ENV,
    KDF_MEMLIMIT,
    KDF_OPSLIMIT,
)
from .encoding import b64d, b64e, parse_json, require
from .errors import AuthenticationError, FormatError, NotFoundError
from .fsutil import atomic_write
from .passphrase import normalize, unlock_forms

IDENTITY_FILE = "identity.json"
_PLAIN_LEN = 1 + 32 + 32  # duress flag, Ed25519 seed, X25519 secret


@dataclass(frozen=True)
class Identity:
    """An unlocked identity. Lives only in memory."""

    name: str
    role: str
    sign_key: SigningKey
    box_key: PrivateKey
    card: Card
    duress: bool = False
    """True when unlocked with the duress passphrase: heartbeats then carry the duress marker."""

    @property
    def fingerprint(self) -> str:
        return self.card.fingerprint


def _kdf_params() -> tuple[int, int]:
    if os.environ.get(INSECURE_FAST_KDF_ENV) == "1":
        return nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN
    return KDF_OPSLIMIT, KDF_MEMLIMIT


def _derive(passphrase: str, salt: bytes, ops: int, mem: int) -> bytes:
    """Argon2id over the passphrase's exact UTF-8 bytes: callers pass normalize()d text when
    sealing, and each of unlock_forms() when opening."""
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase.encode("utf-8"), salt, opslimit=ops, memlimit=mem
    )


def _seal_slot(plain: bytes, passphrase: str | None) -> dict[str, Any]:
    ops, mem = _kdf_params()
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    if passphrase is None:
        key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)  # filler nobody can open
    else:
        key = _derive(normalize(passphrase), salt, ops, mem)
    box = nacl.secret.SecretBox(key).encrypt(plain)
    return {
        "kdf": "argon2id13",
        "ops": ops,
        "mem": mem,
        "salt": b64e(salt),
        "box": b64e(bytes(box)),
    }


def _plain(sign_key: SigningKey, box_key: PrivateKey, duress: bool) -> bytes:
    return bytes([1 if duress else 0]) + bytes(sign_key) + bytes(box_key)


def create_identity(
    home: Path, name: str, role: str, passphrase: str, created: int, url: str | None = None
) -> Identity:
    """Make a new identity under `home`. Refuses to overwrite an existing one."""
    path = home / IDENTITY_FILE
    if path.exists():
        raise FormatError(
            f"an identity already exists in {home}",
            hint="use another --home, or keep the existing identity",
        )
    if not passphrase:
        raise AuthenticationError("the passphrase must not be empty")
    sign_key = SigningKey.generate()
    box_key = PrivateKey.generate()
    card = make_card(name, role, sign_key, bytes(box_key.public_key), created, url)
    slots = [_seal_slot(_plain(sign_key, box_key, False), passphrase)]
    slots += [_seal_slot(secrets.token_bytes(_PLAIN_LEN), None) for _ in range(IDENTITY_SLOTS - 1)]
    doc = {"v": 1, "kind": IDENTITY_KIND, "card": card.text, "slots": slots}
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, json.dumps(doc, indent=1).encode(), mode=0o600)
    return Identity(card.name, role, sign_key, box_key, card)


def _load_doc(home: Path) -> dict[str, Any]:
    path = home / IDENTITY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(
            f"no identity in {home}", hint="create one with 'velador id new --name NAME'"
        ) from None
    doc = parse_json(raw, "identity file")
    if require(doc, "kind", str, "identity file") != IDENTITY_KIND or doc.get("v") != 1:
        raise FormatError("identity file has an unsupported version")
    slots = require(doc, "slots", list, "identity file")
    if len(slots) != IDENTITY_SLOTS:
        raise FormatError("identity file is damaged (wrong number of key slots)")
    return doc


def load_card(home: Path) -> Card:
    """The public card, readable without the passphrase."""
    from .cards import parse_card

    return parse_card(require(_load_doc(home), "card", str, "identity file"))


def _try_slot(slot: Any, passphrase: str) -> bytes | None:
    ops = require(slot, "ops", int, "key slot")
    mem = require(slot, "mem", int, "key slot")
    salt = b64d(require(slot, "salt", str, "key slot"), "salt", nacl.pwhash.argon2id.SALTBYTES)
    box = b64d(require(slot, "box", str, "key slot"), "key slot")
    if not (1 <= ops <= 64 and 8192 <= mem <= 4 * 1024**3):
        raise FormatError("identity file has out-of-range KDF parameters")
    key = _derive(passphrase, salt, ops, mem)
    try:
        return nacl.secret.SecretBox(key).decrypt(box)
    except CryptoError:
        return None


def unlock_identity(home: Path, passphrase: str) -> Identity:
    """Open the identity. Every slot is tried so timing does not reveal which one matched."""
    from .cards import parse_card

    doc = _load_doc(home)
    card = parse_card(require(doc, "card", str, "identity file"))
    plain = None
    for form in unlock_forms(passphrase):  # how many forms are tried depends on the text only
        opened = [_try_slot(slot, form) for slot in doc["slots"]]
        plain = next((p for p in opened if p is not None), None)
        if plain is not None:
            break
    if plain is None:
        raise AuthenticationError(
            "wrong passphrase for this identity", hint="check the keyboard layout and caps lock"
        )
    if len(plain) != _PLAIN_LEN:
        raise FormatError("identity file is damaged (key slot has the wrong size)")
    sign_key = SigningKey(plain[1:33])
    box_key = PrivateKey(plain[33:65])
    if bytes(sign_key.verify_key) != card.sign_pk or bytes(box_key.public_key) != card.box_pk:
        raise FormatError("identity file is damaged (keys do not match the card)")
    return Identity(card.name, card.role, sign_key, box_key, card, duress=plain[0] == 1)


def set_duress_passphrase(home: Path, passphrase: str, duress_passphrase: str) -> None:
    """Fill the second slot so `duress_passphrase` opens the same keys, flagged as duress."""
    if normalize(duress_passphrase) == normalize(passphrase):
        raise AuthenticationError("the duress passphrase must differ from the normal one")
    ident = unlock_identity(home, passphrase)
    if ident.duress:
        raise AuthenticationError("unlock with the normal passphrase to change the duress one")
    doc = _load_doc(home)
    doc["slots"] = [
        _seal_slot(_plain(ident.sign_key, ident.box_key, False), passphrase),
        _seal_slot(_plain(ident.sign_key, ident.box_key, True), duress_passphrase),
    ]
    atomic_write(home / IDENTITY_FILE, json.dumps(doc, indent=1).encode(), mode=0o600)


def change_passphrase(home: Path, passphrase: str, new_passphrase: str) -> None:
    """Re-seal the slot that `passphrase` opens with `new_passphrase`; the other slot is kept.

    Whichever slot opens (normal or duress) is the one changed, and the answer is the same
    either way, so changing a passphrase does not say which kind it was. A new passphrase that
    already opens the other slot is refused: both slots would then open with one passphrase."""
    ident = unlock_identity(home, passphrase)
    doc = _load_doc(home)
    slots = doc["slots"]
    forms = unlock_forms(passphrase)
    mine = next(i for i, slot in enumerate(slots) if any(_try_slot(slot, f) for f in forms))
    others = [i for i in range(len(slots)) if i != mine]
    if any(_try_slot(slots[i], f) for i in others for f in unlock_forms(new_passphrase)):
        raise AuthenticationError(
            "this passphrase cannot be used for this identity", hint="choose another passphrase"
        )
    slots[mine] = _seal_slot(_plain(ident.sign_key, ident.box_key, ident.duress), new_passphrase)
    atomic_write(home / IDENTITY_FILE, json.dumps(doc, indent=1).encode(), mode=0o600)
