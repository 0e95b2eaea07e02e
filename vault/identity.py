"""Identities at rest (docs/format.md §3).

An identity is an Ed25519 signing key and an X25519 box key. The private halves are stored in
`identity.json` (mode 0600) under one of several *slots*, each sealed with a key derived from a
passphrase by Argon2id (nacl.pwhash) and encrypted with SecretBox (XSalsa20-Poly1305).

Version 2 files hold three slots in random order (version 1 files, still read, hold two with the
normal slot first). Until the reporter sets a duress passphrase the other slots are random filler
of the same shape, so a captor who reads the file cannot tell whether a duress passphrase exists
or which slot is which. Unlocking always runs the KDF for every slot so the time taken does not
say which slot opened.

`velador id duress` run with the duress passphrase must look exactly like a run with the normal
one (docs/threat-model.md, "Finding 3"): it keeps the normal slot byte for byte, and the
captor's "current" passphrase and the new one both open duress slots. A duress slot's flag byte
names the normal slot's index (flag - 1), so that rewrite knows which slot to keep without the
normal passphrase.

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
from .errors import N_, AuthenticationError, FormatError, NotFoundError
from .fsutil import atomic_write
from .passphrase import normalize, unlock_forms

IDENTITY_FILE = "identity.json"
_PLAIN_LEN = 1 + 32 + 32  # duress flag, Ed25519 seed, X25519 secret
_READ_VERSIONS = {1: 2, 2: IDENTITY_SLOTS}
"""File version -> its number of slots (format.md §3); version 1 is read, never written."""
_WRITE_VERSION = 2


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


def _plain(sign_key: SigningKey, box_key: PrivateKey, normal_index: int | None) -> bytes:
    """flag 0 = normal; flag n >= 1 = duress, the normal slot being slot n - 1 (format.md §3)."""
    flag = 0 if normal_index is None else normal_index + 1
    return bytes([flag]) + bytes(sign_key) + bytes(box_key)


def _filler() -> dict[str, Any]:
    # Sealed under a random passphrase through the same KDF, not a random key: making a filler
    # slot then costs what making a duress slot costs, so `id duress` takes as long under the
    # duress passphrase (two duress slots) as under the normal one (a duress slot and a filler).
    return _seal_slot(secrets.token_bytes(_PLAIN_LEN), secrets.token_urlsafe(32))


def _write_slots(home: Path, doc: dict[str, Any], normal: dict[str, Any], make: list[Any]) -> None:
    """Write `normal` (an already sealed slot, kept byte for byte) and one slot per item of
    `make` in a fresh random order. Each item is a function of the normal slot's final index
    returning a sealed slot, so duress slots can name it (their flag byte)."""
    order = list(range(len(make) + 1))
    secrets.SystemRandom().shuffle(order)
    slots: list[dict[str, Any]] = [{}] * len(order)
    normal_at = order[0]
    slots[normal_at] = normal
    for pos, fn in zip(order[1:], make, strict=True):
        slots[pos] = fn(normal_at)
    doc = dict(doc, v=_WRITE_VERSION, slots=slots)
    atomic_write(home / IDENTITY_FILE, json.dumps(doc, indent=1).encode(), mode=0o600)


def create_identity(
    home: Path, name: str, role: str, passphrase: str, created: int, url: str | None = None
) -> Identity:
    """Make a new identity under `home`. Refuses to overwrite an existing one."""
    path = home / IDENTITY_FILE
    if path.exists():
        raise FormatError(
            N_("an identity already exists in %(home)s"),
            hint=N_("use another --home, or keep the existing identity"),
            home=home,
        )
    if not passphrase:
        raise AuthenticationError(
            N_("the passphrase must not be empty"),
            hint=N_("type a passphrase of several random words"),
        )
    sign_key = SigningKey.generate()
    box_key = PrivateKey.generate()
    card = make_card(name, role, sign_key, bytes(box_key.public_key), created, url)
    normal = _seal_slot(_plain(sign_key, box_key, None), passphrase)
    doc = {"v": _WRITE_VERSION, "kind": IDENTITY_KIND, "card": card.text}
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_slots(home, doc, normal, [lambda _i: _filler()] * (IDENTITY_SLOTS - 1))
    return Identity(card.name, role, sign_key, box_key, card)


def _load_doc(home: Path) -> dict[str, Any]:
    path = home / IDENTITY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(
            N_("no identity in %(home)s"),
            hint=N_("create one with 'velador id new --name NAME'"),
            home=home,
        ) from None
    doc = parse_json(raw, "identity file")
    version = doc.get("v")
    if (
        require(doc, "kind", str, "identity file") != IDENTITY_KIND
        or type(version) is not int
        or version not in _READ_VERSIONS
    ):
        raise FormatError(
            N_("identity file has an unsupported version"),
            hint=N_("upgrade velador, or restore the identity folder from your backup"),
        )
    slots = require(doc, "slots", list, "identity file")
    if len(slots) != _READ_VERSIONS[version]:
        raise FormatError(
            N_("identity file is damaged (wrong number of key slots)"),
            hint=N_("restore the identity folder from your backup"),
        )
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
        raise FormatError(
            N_("identity file has out-of-range KDF parameters"),
            hint=N_("restore the identity folder from your backup"),
        )
    key = _derive(passphrase, salt, ops, mem)
    try:
        return nacl.secret.SecretBox(key).decrypt(box)
    except CryptoError:
        return None


def _open(home: Path, passphrase: str) -> tuple[dict[str, Any], Identity, int]:
    """The file, the unlocked identity and the index of the slot that opened."""
    from .cards import parse_card

    doc = _load_doc(home)
    card = parse_card(require(doc, "card", str, "identity file"))
    hits: list[tuple[int, bytes]] = []
    for form in unlock_forms(passphrase):  # how many forms are tried depends on the text only
        opened = [_try_slot(slot, form) for slot in doc["slots"]]
        hits = [(i, p) for i, p in enumerate(opened) if p is not None]
        if hits:
            break
    if not hits:
        raise AuthenticationError(
            N_("wrong passphrase for this identity"),
            hint=N_("check the keyboard layout and caps lock"),
        )
    # One passphrase opening two slots only happens if a duress passphrase was set equal to
    # the normal one without knowing it (a captor who already knows it): prefer the alarm.
    index, plain = max(hits, key=lambda h: h[1][0] != 0)
    if len(plain) != _PLAIN_LEN or plain[0] > len(doc["slots"]):
        raise FormatError(
            N_("identity file is damaged (key slot has the wrong size)"),
            hint=N_("restore the identity folder from your backup"),
        )
    sign_key = SigningKey(plain[1:33])
    box_key = PrivateKey(plain[33:65])
    if bytes(sign_key.verify_key) != card.sign_pk or bytes(box_key.public_key) != card.box_pk:
        raise FormatError(
            N_("identity file is damaged (keys do not match the card)"),
            hint=N_("restore the identity folder from your backup"),
        )
    ident = Identity(card.name, card.role, sign_key, box_key, card, duress=plain[0] != 0)
    if ident.duress:
        index = -plain[0]  # -(normal index + 1): see set_duress_passphrase
    return doc, ident, index


def unlock_identity(home: Path, passphrase: str) -> Identity:
    """Open the identity. Every slot is tried so timing does not reveal which one matched."""
    return _open(home, passphrase)[1]


def set_duress_passphrase(home: Path, passphrase: str, duress_passphrase: str) -> None:
    """Make `duress_passphrase` open the same keys, flagged as duress (format.md §3).

    Under the normal passphrase: the normal slot is kept byte for byte, a fresh duress slot
    and a fresh filler slot join it, in a new random order. Under a duress passphrase the
    answer and the file's shape are the same (a captor who was given the duress passphrase
    and tries to set "their own" must see nothing unusual): the normal slot, found through the
    duress slot's flag, is kept byte for byte, and the passphrase given and the new one both
    get fresh duress slots, so both keep opening, as the captor expects."""
    if normalize(duress_passphrase) == normalize(passphrase):
        raise AuthenticationError(
            N_("the duress passphrase must differ from the normal one"),
            hint=N_("choose a duress passphrase you have never used as your normal one"),
        )
    doc, ident, index = _open(home, passphrase)
    sk, bk = ident.sign_key, ident.box_key

    def duress_slot(pp: str) -> Any:
        return lambda normal_at: _seal_slot(_plain(sk, bk, normal_at), pp)

    if ident.duress:
        normal = doc["slots"][-index - 1]
        _write_slots(home, doc, normal, [duress_slot(passphrase), duress_slot(duress_passphrase)])
    else:
        normal = doc["slots"][index]
        _write_slots(home, doc, normal, [duress_slot(duress_passphrase), lambda _i: _filler()])


def change_passphrase(home: Path, passphrase: str, new_passphrase: str) -> None:
    """Re-seal the slot that `passphrase` opens with `new_passphrase`; the others are kept.

    Whichever slot opens (normal or duress) is the one changed, and the answer is the same
    either way, so changing a passphrase does not say which kind it was. A duress slot keeps its
    flag (which names the normal slot), since the slots stay where they are. A new passphrase
    that already opens another slot is refused: two slots would then open with one passphrase."""
    _open(home, passphrase)  # checks the passphrase and that the keys match the card
    doc = _load_doc(home)
    slots = doc["slots"]
    mine: tuple[int, bytes] | None = None
    for form in unlock_forms(passphrase):
        opened = [_try_slot(slot, form) for slot in slots]
        hits = [(i, p) for i, p in enumerate(opened) if p is not None]
        if hits:
            mine = max(hits, key=lambda h: h[1][0] != 0)  # the same slot _open chose
            break
    assert mine is not None  # _open succeeded with the same forms
    others = [i for i in range(len(slots)) if i != mine[0]]
    if any(_try_slot(slots[i], f) for i in others for f in unlock_forms(new_passphrase)):
        raise AuthenticationError(
            N_("this passphrase cannot be used for this identity"),
            hint=N_("choose another passphrase"),
        )
    slots[mine[0]] = _seal_slot(mine[1], new_passphrase)
    atomic_write(home / IDENTITY_FILE, json.dumps(doc, indent=1).encode(), mode=0o600)
