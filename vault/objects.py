"""Stored objects (docs/format.md §6.2, §6.3).

Every stored object is a plain age file encrypted to the case's release recipient; the stock
`age -d` opens any of them with the recovered key. A chunk's object id is the keyed BLAKE3 hash of
its plaintext under the case's chunk key: equal chunks get equal ids (deduplication) while the id
reveals nothing to anyone without the key. After decryption the id is recomputed, so a store
cannot substitute one valid object for another.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import blake3
import zstandard

from .constants import (
    AGE_HEADER_MIN,
    OBJECT_ID_BYTES,
    ZSTD_LEVEL,
    ZSTD_MIN_SAVING,
    ZSTD_SAMPLE_FROM,
    ZSTD_SAMPLE_PIECE,
    ZSTD_SAMPLE_PIECES,
    ZSTD_SAMPLE_SAVING,
)
from .errors import N_, AuthenticationError, FormatError, NotFoundError, StoreError, VeladorError

if TYPE_CHECKING:
    from pyrage import x25519

    from . import agev1

    Identities = Sequence[agev1.Identity | x25519.Identity]

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


# Two age implementations, one format (plain age v1, format §6.3; docs/decisions.md (15)).
# Chunks, the hot path, are encrypted and decrypted by the engine of vault/agev1.py in the worker
# functions below (a third of pyrage's CPU per byte). Snapshots and keyrings, a few small objects
# handled by the main process, which holds pyrage for identities anyway, stay on pyrage (when
# workers were processes, this kept `cryptography` out of the main one; with worker threads both
# share one process). Both are imported where used, so that worker processes never load pyrage.


def encrypt(data: bytes | memoryview, recipient: str) -> bytes:
    import pyrage
    from pyrage import x25519

    return pyrage.encrypt(bytes(data), [x25519.Recipient.from_str(recipient)])


def decrypt(ciphertext: bytes, identities: Identities, what: str) -> bytes:
    import pyrage

    try:
        return pyrage.decrypt(ciphertext, _pyrage_ids(identities))
    except pyrage.DecryptError as exc:
        raise AuthenticationError(
            N_("%(what)s does not decrypt: it is corrupt or was altered"), what=what
        ) from exc


def _pyrage_ids(identities: Identities) -> list[x25519.Identity]:
    from pyrage import x25519

    return [
        i if isinstance(i, x25519.Identity) else x25519.Identity.from_str(str(i))
        for i in identities
    ]


def max_chunk_object(length: int) -> int:
    """The most bytes an honest age object for a `length`-byte chunk can have (format §6.3:
    header, 16-byte nonce, a 16-byte tag per 64 KiB segment), with room for header grease."""
    return length + 16 * (length // 65536 + 2) + 16 + 4096


def open_chunk(ciphertext: bytes, identities: Identities, chunk_key: bytes, oid: str) -> bytes:
    data = decrypt(ciphertext, identities, f"object {oid[:12]}")
    if object_id(chunk_key, data) != oid:
        raise AuthenticationError(
            N_("object %(oid)s does not match its id: it was substituted"), oid=oid[:12]
        )
    return data


# --- compression (format.md §6.3) ----------------------------------------------------------------

_ZSTD = threading.local()


def pack_chunk(
    data: bytes | memoryview, want: bool | None = None
) -> tuple[bytes | memoryview, bool]:
    """The bytes to encrypt for a chunk, and whether they are a zstd frame (format.md §6.3).

    Compressed only when that saves at least ZSTD_MIN_SAVING bytes: media and other compressed
    data are stored as they are, and a store cannot tell the two forms apart by guessing.
    A chunk of ZSTD_SAMPLE_FROM bytes or more is first tried on a sample (`_sample_shrinks`):
    three quarters of a reporter's bytes are media, which zstd cannot shrink, and compressing
    all of it only to throw the result away cost 0.34 CPU s per GiB; the sample costs 0.03.
    `want` forces the form of an object made again after every copy was lost: the manifests
    that already name it say which form it has (vault.deposit.remember_forms).
    """
    if want is False or (want is None and len(data) <= ZSTD_MIN_SAVING):
        return data, False
    if want is None and len(data) >= ZSTD_SAMPLE_FROM and not _sample_shrinks(data):
        return data, False
    packed = _cctx().compress(data)
    if want or len(packed) <= len(data) - ZSTD_MIN_SAVING:
        return packed, True
    return data, False


def _cctx() -> zstandard.ZstdCompressor:
    cctx = getattr(_ZSTD, "cctx", None)
    if cctx is None:
        cctx = _ZSTD.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    return cctx


def _sample_shrinks(data: bytes | memoryview) -> bool:
    """Whether ZSTD_SAMPLE_PIECES pieces of ZSTD_SAMPLE_PIECE bytes, spread evenly over the
    chunk, compress together by at least 1/ZSTD_SAMPLE_SAVING. Random bytes save nothing;
    text, tables and uncompressed images or sound save a quarter or more, so one piece of them
    passes the chunk, which is then compressed whole. Pieces are at most a seventh of the chunk
    apart: compressible content over a quarter of a chunk always holds one, wherever it lies."""
    view = memoryview(data).cast("B")
    step = (len(view) - ZSTD_SAMPLE_PIECE) // (ZSTD_SAMPLE_PIECES - 1)
    sample = b"".join(
        view[i * step : i * step + ZSTD_SAMPLE_PIECE] for i in range(ZSTD_SAMPLE_PIECES)
    )
    return len(_cctx().compress(sample)) <= len(sample) - len(sample) // ZSTD_SAMPLE_SAVING


def raw_object_min(length: int) -> int:
    """The fewest bytes an age object holding `length` plaintext bytes as they are can have."""
    return AGE_HEADER_MIN + 16 + length + 16 * max(1, -(-length // 65536))


def stored_packed(csize: int, length: int) -> bool:
    """Whether a stored object of `csize` bytes for a `length`-byte chunk holds it compressed.

    Only for the writer, which knows the sizes of its own objects (vault.deposit): a compressed
    object saves at least ZSTD_MIN_SAVING bytes, more than any header can add back, so it is
    smaller than the smallest object holding the chunk as it is. Readers use the manifest's flag.
    """
    return 0 < csize < raw_object_min(length)


def unpack_chunk(payload: bytes, length: int) -> bytes | None:
    """Decompress one zstd frame into exactly `length` bytes, or None (format.md §6.3).

    The frame must declare its content size and it must be `length`; zstd refuses to decode past
    a declared size, so a hostile store or a compression bomb can never make the reader produce
    or allocate more than the manifest says. Exactly one frame and nothing after it: `zstd -d`
    would decode a second frame too, and the two readers must agree.
    """
    try:
        if zstandard.frame_content_size(payload) != length:
            return None
        # A window never needs to exceed the chunk (at most CHUNK_MAX, 4 MiB): refuse more.
        dobj = zstandard.ZstdDecompressor(max_window_size=1 << 23).decompressobj()
        out = dobj.decompress(payload)
    except zstandard.ZstdError:
        return None
    if not dobj.eof or dobj.unused_data or len(out) != length:
        return None
    return out


def open_packed_chunk(
    ciphertext: bytes, identities: Identities, chunk_key: bytes, oid: str, length: int
) -> bytes | None:
    """`open_chunk_into` for a chunk the manifest marks compressed: decrypt (with the engine, as
    every chunk), decompress within `length`, then check the id over the decompressed bytes.
    None if the lengths are wrong: a frame is never larger than the chunk it holds (§6.3)."""
    from . import agev1

    try:
        opened = agev1.open_file(ciphertext, agev1.as_identities(identities))
        if opened.size > length:
            return None
        frame = bytearray(opened.size)
        opened.decrypt_into(frame)
        opened.release()
    except agev1.AgeError as exc:
        raise AuthenticationError(
            N_("object %(oid)s does not decrypt: it is corrupt or was altered"), oid=oid[:12]
        ) from exc
    data = unpack_chunk(bytes(frame), length)
    if data is None:
        return None
    if object_id(chunk_key, data) != oid:
        raise AuthenticationError(
            N_("object %(oid)s does not match its id: it was substituted"), oid=oid[:12]
        )
    return data


def open_chunk_into(
    ciphertext: bytes, identities: Identities, chunk_key: bytes, oid: str, length: int
) -> bytearray | None:
    """`open_chunk` for a chunk of known `length`, decrypted in place into a buffer of that
    length; None if the plaintext is not exactly `length` bytes (known from the header before
    anything is decrypted). The id is checked before anything is returned."""
    from . import agev1

    try:
        opened = agev1.open_file(ciphertext, agev1.as_identities(identities))
        if opened.size != length:
            return None
        buf = bytearray(length)
        opened.decrypt_into(buf)
        opened.release()
    except agev1.AgeError as exc:
        raise AuthenticationError(
            N_("object %(oid)s does not decrypt: it is corrupt or was altered"), oid=oid[:12]
        ) from exc
    if object_id(chunk_key, buf) != oid:
        raise AuthenticationError(
            N_("object %(oid)s does not match its id: it was substituted"), oid=oid[:12]
        )
    return buf


# --- worker side of deposits and recoveries ------------------------------------------------------
# These run in worker threads (vault/parallel.py; worker processes, which import this module and
# the stores only, when VELADOR_WORKERS=processes). They run inline for small jobs.


class _PerThread(threading.local):
    """The state `init_*_worker` sets up, one per thread: a worker thread (vault/parallel.py)
    has its own stores, index connection and open file; a worker process has one thread."""

    def __init__(self) -> None:
        self.d: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self.d[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.d[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        return self.d.get(key, default)

    def pop(self, key: str, default: Any = None) -> Any:
        return self.d.pop(key, default)

    def setdefault(self, key: str, default: Any) -> Any:
        return self.d.setdefault(key, default)

    def update(self, **values: Any) -> None:
        self.d.update(values)

    def clear(self) -> None:
        self.d.clear()


_W = _PerThread()

ChunkResult = tuple[Any, ...]
"""(file index, offset, object id, length, stored size, ciphertext hash or None, bytes uploaded,
new to the index, staged tokens as (store index, token), file changed while read, and for a
chunk stored in a pack by this task: (pack id, offset in the pack) or None, then the pack's own
`PackResult` on the first chunk of the pack, else None)."""

PackResult = tuple[str, int, int, "str | None", int, bool, list[tuple[int, str]]]
"""(pack id, pack length, stored size, ciphertext hash or None, bytes uploaded, new to the
index, staged tokens): the pack, accounted as an object of its own (format.md §6.3, §6.6)."""


def init_deposit_worker(
    case_id: str,
    store_urls: list[Any],
    s3_endpoint: str | None,
    chunk_key: bytes,
    recipient: str,
    db_path: str,
    listed: list[dict[str, int] | None] | None = None,
) -> None:
    """`store_urls[i]`: a store URL to open, or a store to use as is (the deposit shares its S3
    stores, whose boto3 client is safe to share between threads). `listed[i]`: for a store the
    deposit listed (vault.deposit), the objects it holds that the index does not know, with their
    sizes; None: ask the store per chunk (`has`)."""
    from .stores import open_store

    _close_file()
    _W.clear()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=10000")
    forms = _forms(db, case_id)
    _W.update(
        forms=forms if isinstance(forms, dict) else {},
        case_id=case_id,
        key=chunk_key,
        recipient=_engine().Recipient.from_str(recipient),
        stores=[
            open_store(u, s3_endpoint=s3_endpoint) if isinstance(u, str) else u for u in store_urls
        ],
        # A copy per worker, as each worker process had: _listed_now adds and prunes keys, and
        # another thread must not lose a key between its check and its read.
        listed=[None if ls is None else dict(ls) for ls in listed or [None] * len(store_urls)],
        db=db,
    )


def _forms(db: sqlite3.Connection, case_id: str) -> Any:
    """The stored sizes of objects the index forgot (vault.deposit.remember_forms)."""
    try:
        row = db.execute("SELECT extra FROM cases WHERE case_id = ?", (case_id,)).fetchone()
    except sqlite3.OperationalError:  # an index without local cases (worker tests)
        return {}
    return json.loads(row[0] or "{}").get("forms", {}) if row else {}


def _engine() -> Any:
    """vault.agev1, imported by the workers (and inline jobs) only."""
    from . import agev1

    return agev1


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
    changed = (findex, offset, "", 0, 0, None, 0, False, [], True, None, None)
    if length == 0:  # the file had no chunk left to give: it shrank since it was listed
        return changed
    try:
        data = os.pread(_fd_for(path, os.O_RDONLY, ino), length, offset)
    except FileNotFoundError:
        return changed
    if len(data) != length:
        return changed
    oid = object_id(_W["key"], data)
    if _known(oid):
        return findex, offset, oid, length, 0, None, 0, False, [], False, None, None
    csize, chash, uploaded, new, tokens = _store_object(oid, data, length)
    return findex, offset, oid, length, csize, chash, uploaded, new, tokens, False, None, None


def _known(oid: str) -> bool:
    """Whether the index knows the chunk, as an object or in a known pack (state.py `known`)."""
    sql = "SELECT 1 FROM known WHERE case_id = ? AND oid = ?"
    return _W["db"].execute(sql, (_W["case_id"], oid)).fetchone() is not None


def store_task(task: tuple[Any, ...]) -> list[ChunkResult]:
    """A deposit's unit of work (vault.deposit): one chunk, or a group of small files to pack."""
    if task[0] == "pack":
        return store_pack(task[1])
    return [store_chunk(task[1])]


def store_pack(members: list[tuple[int, str, int, int, int]]) -> list[ChunkResult]:
    """Read a group of chunks and store those the index does not know in one pack (format.md
    §6.3 "Packs"): its plaintext is their concatenation in group order, its id their keyed hash,
    so a cut-off deposit run again makes the same pack and finds it stored.

    `members`: (file index, path, inode, offset, length) per chunk: whole small files, or
    consecutive chunks of one large file. One result per chunk, in order; the first chunk placed
    in the pack carries the pack's own result. A group with one new chunk stores it as a chunk
    object: a pack of one saves nothing."""
    buf = bytearray(sum(m[4] for m in members))  # every chunk read straight into its place
    view = memoryview(buf)
    out: list[ChunkResult] = []
    fresh: list[tuple[int, int, int]] = []  # (index in out, start in buf, length), first seen
    alone: list[tuple[int, int, int]] = []  # the same, for chunks made again on their own
    place: dict[str, int] = {}  # chunk id -> offset in the pack
    size = pos = 0
    for findex, path, ino, offset, length in members:
        piece = view[pos : pos + length]
        try:
            got = os.preadv(_fd_for(path, os.O_RDONLY, ino), [piece], offset)
        except FileNotFoundError:
            got = -1
        if got != length:
            out.append((findex, offset, "", 0, 0, None, 0, False, [], True, None, None))
            continue
        oid = object_id(_W["key"], piece)
        if oid not in place and _known(oid):
            out.append((findex, offset, oid, length, 0, None, 0, False, [], False, None, None))
        elif oid not in place and isinstance(_W["forms"].get(oid), int):
            # Stored once as an object of its own, then lost everywhere: manifests name it by
            # its own id, so it is made again under that id and in its form, never packed
            # (format.md §6.3 "Packs"; vault.deposit.remember_forms).
            alone.append((len(out), pos, length))
            out.append((findex, offset, oid, length, 0, None, 0, True, [], False, None, None))
        else:
            if oid not in place:
                place[oid] = size
                size += length
                fresh.append((len(out), pos, length))
            out.append((findex, offset, oid, length, 0, None, 0, True, [], False, None, None))
        pos += length
    for i, at, length in alone:
        _store_alone(out, i, bytes(view[at : at + length]))
    if len(fresh) == 1:
        i, at, length = fresh[0]
        data = bytes(view[at : at + length])
        del view, buf
        _store_alone(out, i, data)
    elif fresh:
        whole = size == len(buf)  # every chunk new, once each: the buffer is the pack
        plain = buf if whole else b"".join(view[at : at + n] for _, at, n in fresh)
        del view, buf
        pid = object_id(_W["key"], plain)
        if _known(pid):  # the same pack (or a chunk with its very bytes) is stored already
            pack: PackResult = (pid, size, 0, None, 0, False, [])
        else:
            pack = (pid, size, *_store_object(pid, plain, size))
        del plain
        first = fresh[0][0]
        for i, r in enumerate(out):
            if r[7] and r[2] in place:
                out[i] = (*r[:10], (pid, place[r[2]]), pack if i == first else None)
    return out


def _store_alone(out: list[ChunkResult], i: int, data: bytes) -> None:
    """Store the chunk of result `i` as an object of its own and put its result in place."""
    findex, offset, oid, length = out[i][:4]
    stored = _store_object(oid, data, length)
    out[i] = (findex, offset, oid, length, *stored, False, None, None)


def _store_object(
    oid: str, data: bytes | memoryview, length: int
) -> tuple[int, str | None, int, bool, list[tuple[int, str]]]:
    """Encrypt and stage object `oid` (`length` plaintext bytes) where a store lacks it.
    Returns (stored size, ciphertext hash or None, bytes uploaded, new to the index, tokens)."""
    key = object_key(_W["case_id"], oid)
    stores = _W["stores"]
    listed = _W["listed"]
    # An S3 store was listed once by the deposit instead of a HEAD here per chunk (format.md §6.6)
    present = [
        s.has(key) if ls is None else key in ls for s, ls in zip(stores, listed, strict=True)
    ]
    if all(present):  # uploaded by a run that was cut before it could record the object
        size = stores[0].size(key) if listed[0] is None else listed[0][key]
        return size or 0, None, 0, True, []
    # Replicas must hold identical bytes: copy an existing ciphertext rather than re-encrypting.
    holder = next((s for s, p in zip(stores, present, strict=True) if p), None)
    held = None
    if holder is not None:
        try:
            held = holder.get(key)
        except NotFoundError:  # listed, then deleted: make it again everywhere
            holder, present = None, [False] * len(stores)
    missing = [(i, s) for i, (s, p) in enumerate(zip(stores, present, strict=True)) if not p]
    old_size = _W["forms"].get(oid)  # made again after every copy was lost: keep its form
    want = stored_packed(old_size, length) if isinstance(old_size, int) else None
    payload, packed = pack_chunk(data, want) if holder is None else (data, False)
    del data
    if holder is None and all(hasattr(s, "open_stage") for _, s in missing):
        csize, chash, tokens = _encrypt_to_stages(payload, key, missing)
        _check_packed_size(packed, csize, length)
        return csize, chash, csize * len(tokens), True, tokens
    ciphertext = held if held is not None else bytes(_engine().encrypt(payload, [_W["recipient"]]))
    del payload
    if holder is None:
        _check_packed_size(packed, len(ciphertext), length)
    tokens = []
    uploaded = 0
    for i, store in missing:
        tokens.append((i, store.stage(key, ciphertext)))
        uploaded += len(ciphertext)
    _listed_now(key, len(ciphertext), [i for i, _ in missing])
    chash = cipher_hash(ciphertext)
    return len(ciphertext), chash, uploaded, True, tokens


RECENT_PUTS = 1024
"""Objects this worker PUT lately that it adds to the listings it checks: the same chunk again a
moment later is not sent twice, before the index (which knows it after its batch) answers."""


def _listed_now(key: str, size: int, stores: list[int]) -> None:
    recent = _W.setdefault("recent", [])
    for i in stores:
        listed = _W["listed"][i]
        if listed is not None and key not in listed:
            listed[key] = size
            recent.append((i, key))
    if len(recent) > 2 * RECENT_PUTS:  # memory stays flat whatever the size of the deposit
        for i, old in recent[:-RECENT_PUTS]:
            _W["listed"][i].pop(old, None)
        del recent[:-RECENT_PUTS]


def _check_packed_size(packed: bool, csize: int, length: int) -> None:
    """The writer reads an object's form back from its size (`stored_packed`): make sure it can."""
    if stored_packed(csize, length) != packed:
        raise RuntimeError(f"an age header of {csize - length} bytes breaks the size rule")


class _Tee:
    """The sink the age engine writes the ciphertext to, up to 256 KiB at a time (agev1.encrypt_to):
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
        except BaseException as exc:  # kept, should an encryptor wrap it in its own error
            self.error = exc
            raise
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _encrypt_to_stages(
    data: bytes | memoryview, key: str, missing: list[tuple[int, Any]]
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
            _engine().encrypt_to(data, [_W["recipient"]], tee)
        except Exception as exc:
            if tee.error is not None and tee.error is not exc:
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
    _W["ids"] = [_engine().Identity.from_str(s) for s in identity_strs]


def fetch_chunk(task: tuple[Any, ...]) -> tuple[int, int, list[str]]:
    """Fetch one chunk from the first store with a good copy and write it at its offset; or,
    for a task that starts with "pack", a run of chunks from one pack (`fetch_pack_run`).

    `task` is (tmp, case_id, oid, offset, length, chunk_key[, packed]): `packed` is the
    manifest's zstd flag for the chunk (format.md §6.4), never guessed from the bytes. Returns
    (bytes written, chunk references completed, problems met on the way)."""
    if task[0] == "pack":
        return fetch_pack_run(task)
    tmp, case_id, oid, offset, length, chunk_key, *rest = task
    packed = bool(rest and rest[0])
    problems: list[str] = []
    key = object_key(case_id, oid)
    for store in _W["stores"]:
        try:
            ciphertext = store.get(key, max_chunk_object(length))
            opener = open_packed_chunk if packed else open_chunk_into
            data = opener(ciphertext, _W["ids"], chunk_key, oid, length)
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
        _write_at(tmp, offset, data)
        return length, 1, problems
    raise StoreError(
        N_("object %(oid)s is missing or damaged in every store"),
        hint=N_("what the stores said: %(problems)s"),
        oid=oid[:12],
        problems="; ".join(problems[-3:]),
    )


def _write_at(tmp: str, offset: int, data: bytes | bytearray | memoryview) -> None:
    fd = _fd_for(tmp, os.O_WRONLY | os.O_NOFOLLOW)
    view = memoryview(data)
    pos = offset
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n
    _start_writeback(fd, offset, len(data))


# --- packs (format.md §6.3 "Packs", §9.1 step 5) -------------------------------------------------


def open_pack(
    ciphertext: bytes,
    identities: Identities,
    chunk_key: bytes,
    pid: str,
    length: int,
    packed: bool,
) -> bytes | bytearray | None:
    """A pack's plaintext, checked: decrypted, decompressed when `packs` marks it (never past
    `length`), exactly `length` bytes, and its keyed id recomputed. A pack id is computed as a
    chunk's object id over the whole concatenation, so the chunk openers check it as they are.
    None if the length is wrong; AuthenticationError if it does not decrypt or match its id."""
    opener = open_packed_chunk if packed else open_chunk_into
    return opener(ciphertext, identities, chunk_key, pid, length)


def cut_chunk(
    plain: bytes | bytearray, chunk_key: bytes, pid: str, oid: str, offset: int, length: int
) -> memoryview:
    """The chunk `oid` at `offset` of a checked pack plaintext, its id recomputed: a manifest
    pointing at the wrong slice serves nothing."""
    if not (offset >= 0 and offset + length <= len(plain)):
        raise FormatError(N_("chunk %(oid)s lies outside pack %(pid)s"), oid=oid[:12], pid=pid[:12])
    view = memoryview(plain)[offset : offset + length]
    if object_id(chunk_key, view) != oid:
        raise AuthenticationError(
            N_("chunk %(oid)s at offset %(offset)s of pack %(pid)s does not match its id"),
            oid=oid[:12],
            offset=offset,
            pid=pid[:12],
        )
    return view


def fetch_pack_run(task: tuple[Any, ...]) -> tuple[int, int, list[str]]:
    """Fetch one pack from the first store with a good copy and write every chunk of a run of
    chunk references in it, each at its file offset (format.md §9.1 step 5: a pack is fetched
    once for the chunks that follow each other in it, across file boundaries).

    `task` is ("pack", case_id, pack id, pack length, packed, chunk_key, members), each member
    (tmp, file offset, oid, offset in the pack, length). Every chunk is cut and checked before
    any is written, so nothing from a pack whose id or a chunk whose id did not verify reaches a
    file. The worker keeps the last checked pack (at most PACK_MAX bytes, §6.3), which serves a
    run of the same pack that a large file interrupted."""
    _, case_id, pid, length, packed, chunk_key, members = task
    problems: list[str] = []
    cache_key = (pid, chunk_key, length)
    cached = _W.pop("pack", None)  # never hold two packs at once
    views = None
    if cached is not None and cached[0] == cache_key:
        plain = cached[1]
        try:
            views = _cut_all(plain, chunk_key, pid, members)
        except VeladorError:
            views = None  # ask the stores, which will say what is wrong
    del cached
    if views is None:
        plain = b""  # let the old pack go before fetching
        plain, views = _fetch_pack(case_id, pid, length, packed, chunk_key, members, problems)
    _W["pack"] = (cache_key, plain)
    written = 0
    for (tmp, offset, *_), view in zip(members, views, strict=True):
        _write_at(tmp, offset, view)
        written += len(view)
    return written, len(members), problems


def _fetch_pack(
    case_id: str,
    pid: str,
    length: int,
    packed: bool,
    chunk_key: bytes,
    members: Sequence[tuple[Any, ...]],
    problems: list[str],
) -> tuple[bytes | bytearray, list[memoryview]]:
    """The first copy of a pack that opens and serves every member, with the members cut."""
    key = object_key(case_id, pid)
    for store in _W["stores"]:
        try:
            ciphertext = store.get(key, max_chunk_object(length))
            plain = open_pack(ciphertext, _W["ids"], chunk_key, pid, length, packed)
            del ciphertext
            if plain is None:
                problems.append(f"{store.url}: pack {pid[:12]} has the wrong length")
                continue
            return plain, _cut_all(plain, chunk_key, pid, members)
        except VeladorError as exc:
            if isinstance(exc, NotFoundError):
                problems.append(f"{store.url}: pack {pid[:12]} is missing")
            else:
                problems.append(f"{store.url}: pack {pid[:12]}: {exc.message}")
    raise StoreError(
        N_("pack %(pid)s is missing or damaged in every store"),
        hint=N_("what the stores said: %(problems)s"),
        pid=pid[:12],
        problems="; ".join(problems[-3:]),
    )


def _cut_all(
    plain: bytes | bytearray, chunk_key: bytes, pid: str, members: Sequence[tuple[Any, ...]]
) -> list[memoryview]:
    return [cut_chunk(plain, chunk_key, pid, oid, off, n) for _, _, oid, off, n in members]


def forget_pack() -> None:
    """Drop the pack a worker keeps (inline runs keep it in the main thread's state)."""
    _W.pop("pack", None)


def release_file() -> None:
    """Close the file a worker keeps open (before the main process renames or fsyncs it)."""
    _close_file()


def end_worker() -> None:
    """Close what a worker thread holds (its file, its index connection) as it ends: the agent
    deposits for days in one process (vault/parallel.py runs this in each worker thread)."""
    _close_file()
    db = _W.get("db")
    if db is not None:
        db.close()
    _W.clear()


def _start_writeback(fd: int, offset: int, length: int) -> None:
    from .stores.local import start_writeback

    start_writeback(fd, offset, length)
