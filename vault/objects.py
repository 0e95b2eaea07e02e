"""Stored objects (docs/format.md §6.2, §6.3).

Every stored object is a plain age file encrypted to the case's release recipient; the stock
`age -d` opens any of them with the recovered key. A chunk's object id is the keyed BLAKE3 hash of
its plaintext under the case's chunk key: equal chunks get equal ids (deduplication) while the id
reveals nothing to anyone without the key. After decryption the id is recomputed, so a store
cannot substitute one valid object for another.
"""

from __future__ import annotations

import blake3
import pyrage
from pyrage import x25519

from .constants import OBJECT_ID_BYTES
from .errors import AuthenticationError, FormatError

_HEX = set("0123456789abcdef")


def object_id(chunk_key: bytes, data: bytes | memoryview) -> str:
    return blake3.blake3(data, key=chunk_key).hexdigest()


def cipher_hash(ciphertext: bytes) -> str:
    """Unkeyed BLAKE3 of the stored bytes: lets `verify --deep` check a replica without the key."""
    return blake3.blake3(ciphertext).hexdigest()


def check_object_id(oid: object) -> str:
    if not isinstance(oid, str) or len(oid) != 2 * OBJECT_ID_BYTES or not set(oid) <= _HEX:
        raise FormatError("invalid object id")
    return oid


def object_key(case_id: str, oid: str) -> str:
    return f"{case_id}/objects/{oid[:2]}/{oid}"


def snapshot_key(case_id: str, snap_id: str) -> str:
    return f"{case_id}/snapshots/{snap_id}"


def snapshot_prefix(case_id: str) -> str:
    return f"{case_id}/snapshots/"


def keyring_key(case_id: str, policy_hash: str) -> str:
    return f"{case_id}/keyrings/{policy_hash}"


def encrypt(data: bytes | memoryview, recipient: str) -> bytes:
    return pyrage.encrypt(bytes(data), [x25519.Recipient.from_str(recipient)])


def decrypt(ciphertext: bytes, identities: list[x25519.Identity], what: str) -> bytes:
    try:
        return pyrage.decrypt(ciphertext, identities)
    except pyrage.DecryptError as exc:
        raise AuthenticationError(f"{what} does not decrypt: it is corrupt or was altered") from exc


def open_chunk(
    ciphertext: bytes, identities: list[x25519.Identity], chunk_key: bytes, oid: str
) -> bytes:
    data = decrypt(ciphertext, identities, f"object {oid[:12]}")
    if object_id(chunk_key, data) != oid:
        raise AuthenticationError(f"object {oid[:12]} does not match its id: it was substituted")
    return data
