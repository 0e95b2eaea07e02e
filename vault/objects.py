"""Stored objects (docs/format.md §6.2, §6.3).

Every stored object is a plain age file encrypted to the case's release recipient; the stock
`age -d` opens any of them with the recovered key. A chunk's object id is the keyed BLAKE3 hash of
its plaintext under the case's chunk key: equal chunks get equal ids (deduplication) while the id
reveals nothing to anyone without the key. After decryption the id is recomputed, so a store
cannot substitute one valid object for another.
"""

from __future__ import annotations

import io
import os
import sqlite3
from typing import Any

import blake3
import pyrage
from pyrage import x25519

from .constants import OBJECT_ID_BYTES
from .errors import N_, AuthenticationError, FormatError, NotFoundError, StoreError, VeladorError

_HEX = set("0123456789abcdef")


def object_id(chunk_key: bytes, data: bytes | memoryview) -> str:
    return blake3.blake3(data, key=chunk_key).hexdigest()


def cipher_hash(ciphertext: bytes) -> str:
    """Unkeyed BLAKE3 of the stored bytes: lets `verify --deep` check a replica without the key."""
    return blake3.blake3(ciphertext).hexdigest()


def check_object_id(oid: object) -> str:
    if not isinstance(oid, str) or len(oid) != 2 * OBJECT_ID_BYTES or not set(oid) <= _HEX:
        raise FormatError(N_("invalid object id"))
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
        raise AuthenticationError(
            N_("%(what)s does not decrypt: it is corrupt or was altered"), what=what
        ) from exc


def max_chunk_object(length: int) -> int:
    """The most bytes an honest age object for a `length`-byte chunk can have (format §6.3:
    header, 16-byte nonce, a 16-byte tag per 64 KiB segment), with room for header grease."""
    return length + 16 * (length // 65536 + 2) + 16 + 4096


def open_chunk(
    ciphertext: bytes, identities: list[x25519.Identity], chunk_key: bytes, oid: str
) -> bytes:
    data = decrypt(ciphertext, identities, f"object {oid[:12]}")
    if object_id(chunk_key, data) != oid:
        raise AuthenticationError(
            N_("object %(oid)s does not match its id: it was substituted"), oid=oid[:12]
        )
    return data


class _Into:
    """The sink pyrage.decrypt_io writes plaintext to: a buffer of the expected length, filled
    in place (pyrage.decrypt grows a vector by doubling, then copies it: up to four times the
    chunk in memory). More bytes than expected stop the decryption at once."""

    def __init__(self, length: int) -> None:
        self.buf = bytearray(length)
        self.view = memoryview(self.buf)
        self.pos = 0
        self.overflow = False

    def write(self, data: bytes) -> int:
        end = self.pos + len(data)
        if end > len(self.buf):
            self.overflow = True
            raise ValueError("more plaintext than the manifest says")
        self.view[self.pos : end] = data
        self.pos = end
        return len(data)

    def flush(self) -> None:
        pass


def open_chunk_into(
    ciphertext: bytes, identities: list[x25519.Identity], chunk_key: bytes, oid: str, length: int
) -> bytearray | None:
    """`open_chunk` for a chunk of known `length`, decrypted in place; None if the plaintext is
    not exactly `length` bytes. The id is checked before anything is returned."""
    into = _Into(length)
    try:
        pyrage.decrypt_io(io.BytesIO(ciphertext), into, identities)
    except Exception as exc:
        if into.overflow:
            return None
        raise AuthenticationError(
            N_("object %(oid)s does not decrypt: it is corrupt or was altered"), oid=oid[:12]
        ) from exc
    if into.pos != length:
        return None
    into.view.release()
    if object_id(chunk_key, into.buf) != oid:
        raise AuthenticationError(
            N_("object %(oid)s does not match its id: it was substituted"), oid=oid[:12]
        )
    return into.buf


# --- worker side of deposits and recoveries ------------------------------------------------------
# These run in worker processes (vault/parallel.py), which import this module and the stores only:
# a light interpreter, so the process tree stays small. They run inline for small jobs.

_W: dict[str, Any] = {}

ChunkResult = tuple[int, int, str, int, int, "str | None", int, bool, list[tuple[int, str]], bool]
"""(file index, offset, object id, length, stored size, ciphertext hash or None, bytes uploaded,
new to the index, staged tokens as (store index, token), file changed while read)."""


def init_deposit_worker(
    case_id: str,
    store_urls: list[str],
    s3_endpoint: str | None,
    chunk_key: bytes,
    recipient: str,
    db_path: str,
) -> None:
    from .stores import open_store

    _close_file()
    _W.clear()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=10000")
    _W.update(
        case_id=case_id,
        key=chunk_key,
        recipient=x25519.Recipient.from_str(recipient),
        stores=[open_store(u, s3_endpoint=s3_endpoint) for u in store_urls],
        db=db,
    )


def _fd_for(path: str, flags: int, ino: int | None = None) -> int:
    """Keep the last file open: consecutive chunks nearly always belong to the same file.

    With `ino`, the open file must be that inode (a file replaced under the same name is another
    file: FileNotFoundError, which the caller reports as a changed file).
    """
    cur = _W.get("file")
    if cur is not None and cur[0] == (path, flags, ino):
        return int(cur[1])
    _close_file()
    fd = os.open(path, flags)
    if ino is not None and os.fstat(fd).st_ino != ino:
        os.close(fd)
        raise FileNotFoundError(path)
    _W["file"] = ((path, flags, ino), fd)
    return fd


def _close_file() -> None:
    cur = _W.pop("file", None)
    if cur is not None:
        os.close(cur[1])


def store_chunk(task: tuple[int, str, int, int, int]) -> ChunkResult:
    """Read one chunk at its offset, name it, and encrypt and stage it where it is missing.

    The worker reads the bytes itself (the main process sends offsets, not data) and names them
    from what it read, so an object always matches its id even if the file changes meanwhile;
    a short read reports the file as changed. Staged objects are invisible until the main process
    commits them (vault.stores, format.md §6.6).
    """
    findex, path, ino, offset, length = task
    if length == 0:  # the file had no chunk left to give: it shrank since it was listed
        return findex, offset, "", 0, 0, None, 0, False, [], True
    try:
        data = os.pread(_fd_for(path, os.O_RDONLY, ino), length, offset)
    except FileNotFoundError:
        return findex, offset, "", 0, 0, None, 0, False, [], True
    if len(data) != length:
        return findex, offset, "", 0, 0, None, 0, False, [], True
    oid = object_id(_W["key"], data)
    row = (
        _W["db"]
        .execute("SELECT 1 FROM objects WHERE case_id = ? AND oid = ?", (_W["case_id"], oid))
        .fetchone()
    )
    if row is not None:
        return findex, offset, oid, length, 0, None, 0, False, [], False
    key = object_key(_W["case_id"], oid)
    stores = _W["stores"]
    present = [s.has(key) for s in stores]
    if all(present):  # uploaded by a run that was cut before it could record the object
        return findex, offset, oid, length, stores[0].size(key) or 0, None, 0, True, [], False
    # Replicas must hold identical bytes: copy an existing ciphertext rather than re-encrypting.
    holder = next((s for s, p in zip(stores, present, strict=True) if p), None)
    missing = [(i, s) for i, (s, p) in enumerate(zip(stores, present, strict=True)) if not p]
    if holder is None and all(hasattr(s, "open_stage") for _, s in missing):
        csize, chash, tokens = _encrypt_to_stages(data, key, missing)
        return findex, offset, oid, length, csize, chash, csize * len(tokens), True, tokens, False
    ciphertext = holder.get(key) if holder else pyrage.encrypt(data, [_W["recipient"]])
    del data
    tokens = []
    uploaded = 0
    for i, store in missing:
        tokens.append((i, store.stage(key, ciphertext)))
        uploaded += len(ciphertext)
    chash = cipher_hash(ciphertext)
    return findex, offset, oid, length, len(ciphertext), chash, uploaded, True, tokens, False


class _Tee:
    """The file-like sink pyrage.encrypt_io writes the ciphertext to, 64 KiB segment by segment:
    every staged copy gets each piece, and the ciphertext hash is taken on the way."""

    def __init__(self, outs: list[Any]) -> None:
        self.outs = outs
        self.hash = blake3.blake3()
        self.size = 0
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            for out in self.outs:
                out.write(data)
        except BaseException as exc:  # pyrage turns it into an EncryptError: keep the real one
            self.error = exc
            raise
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _encrypt_to_stages(
    data: bytes, key: str, missing: list[tuple[int, Any]]
) -> tuple[int, str, list[tuple[int, str]]]:
    """Encrypt `data` straight into a staged copy in each store: no whole-ciphertext buffer
    (a 4 MiB chunk cost 16 MiB of peak memory through pyrage.encrypt's growing output), and the
    bytes are hashed as they pass. Returns (stored size, ciphertext hash, tokens)."""
    outs: list[Any] = []
    try:
        for _, store in missing:
            outs.append(store.open_stage(key))
        tee = _Tee(outs)
        try:
            pyrage.encrypt_io(io.BytesIO(data), tee, [_W["recipient"]])
        except Exception as exc:
            if tee.error is not None:
                raise tee.error from exc
            raise
        tokens = [(i, out.finish()) for (i, _), out in zip(missing, outs, strict=True)]
    except BaseException:
        for out in outs:
            out.abort()
        raise
    return tee.size, tee.hash.hexdigest(), tokens


def init_recover_worker(
    store_urls: list[str], s3_endpoint: str | None, identity_strs: list[str]
) -> None:
    from .stores import open_store

    _close_file()
    _W.clear()
    _W["stores"] = [open_store(u, s3_endpoint=s3_endpoint) for u in store_urls]
    _W["ids"] = [x25519.Identity.from_str(s) for s in identity_strs]


def fetch_chunk(task: tuple[str, str, str, int, int, bytes]) -> tuple[int, list[str]]:
    """Fetch one chunk from the first store with a good copy and write it at its offset."""
    tmp, case_id, oid, offset, length, chunk_key = task
    problems: list[str] = []
    key = object_key(case_id, oid)
    for store in _W["stores"]:
        try:
            ciphertext = store.get(key, max_chunk_object(length))
            data = open_chunk_into(ciphertext, _W["ids"], chunk_key, oid, length)
            del ciphertext
        except VeladorError as exc:
            if isinstance(exc, NotFoundError):
                problems.append(f"{store.url}: object {oid[:12]} is missing")
            else:
                problems.append(f"{store.url}: object {oid[:12]}: {exc.message}")
            continue
        if data is None:
            problems.append(f"{store.url}: object {oid[:12]} has the wrong length")
            continue
        fd = _fd_for(tmp, os.O_WRONLY | os.O_NOFOLLOW)
        view = memoryview(data)
        pos = offset
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n
        _start_writeback(fd, offset, length)
        return length, problems
    raise StoreError(
        N_("object %(oid)s is missing or damaged in every store"),
        hint=N_("what the stores said: %(problems)s"),
        oid=oid[:12],
        problems="; ".join(problems[-3:]),
    )


def release_file() -> None:
    """Close the file a worker keeps open (before the main process renames or fsyncs it)."""
    _close_file()


def _start_writeback(fd: int, offset: int, length: int) -> None:
    from .stores.local import start_writeback

    start_writeback(fd, offset, length)
