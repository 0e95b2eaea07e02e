"""Deposits: walk, chunk, deduplicate, encrypt, replicate, then write the snapshot (format.md §6).

Ordering rule (format.md §6.6, "must"): every object a manifest names is in every store of the
case before the manifest is written, and the local index records an object only after all
stores hold it. A deposit killed at any point therefore leaves stores that are a superset of what
any manifest needs, and a re-run uploads only what is missing.
"""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import blake3

from .chunker import chunk_file
from .clock import Clock
from .constants import MAX_INSTRUCTIONS_BYTES
from .errors import FormatError, NotFoundError
from .identity import Identity
from .manifest import Entry, Manifest, entry_mode, parse_manifest, safe_path, seal_snapshot
from .objects import cipher_hash, encrypt, object_id, object_key, snapshot_key
from .parallel import Pool, default_jobs
from .state import CaseRecord, LocalState, open_db, open_sealed
from .stores import Store, open_store

INLINE_BELOW = 48 * 1024 * 1024
"""Below this many bytes to read, workers cost more to start than they save."""

INDEX_BATCH = 64
"""Objects recorded in the local index per store sync (about 64 MiB of chunks)."""


@dataclass
class DepositResult:
    case: str
    snapshot_id: str | None
    seq: int | None
    files: int = 0
    dirs: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    bytes_uploaded: int = 0
    new_chunks: int = 0
    known_chunks: int = 0
    cached_files: int = 0
    skipped: list[str] = field(default_factory=list)
    unchanged: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- worker side -------------------------------------------------------------------------------

_W: dict[str, Any] = {}


def _init_worker(
    case_id: str,
    store_urls: list[str],
    s3_endpoint: str | None,
    chunk_key: bytes,
    recipient: str,
    db_path: str,
) -> None:
    _W.clear()
    _W.update(
        case_id=case_id,
        key=chunk_key,
        recipient=recipient,
        stores=[open_store(u, s3_endpoint=s3_endpoint) for u in store_urls],
        db=open_db(Path(db_path)),
    )


def _known(oid: str) -> bool:
    return (
        _W["db"]
        .execute("SELECT 1 FROM objects WHERE case_id = ? AND oid = ?", [_W["case_id"], oid])
        .fetchone()
        is not None
    )


def _store_chunk(task: tuple[str, int, int]) -> tuple[str, int, int, str | None, int, bool]:
    """Read, hash and (if new) encrypt and replicate one chunk.

    Returns (oid, length, stored size, ciphertext hash, bytes uploaded, was new).
    """
    path, offset, length = task
    with open(path, "rb") as fh:
        data = os.pread(fh.fileno(), length, offset)
    if len(data) != length:
        raise FormatError(f"{path} changed while it was being read", hint="deposit again")
    oid = object_id(_W["key"], data)
    if _known(oid):
        return oid, length, 0, None, 0, False
    key = object_key(_W["case_id"], oid)
    stores: list[Store] = _W["stores"]
    present = [s.has(key) for s in stores]
    if all(present):  # uploaded by a run that was cut before it could record the object
        return oid, length, stores[0].size(key) or 0, None, 0, True
    # Replicas must hold identical bytes: copy an existing ciphertext rather than re-encrypting.
    holder = next((s for s, p in zip(stores, present, strict=True) if p), None)
    ciphertext = holder.get(key) if holder else encrypt(data, _W["recipient"])
    uploaded = 0
    for store, p in zip(stores, present, strict=True):
        if not p:
            # The main process syncs every store before it records the object (format.md §6.6).
            store.put(key, ciphertext, durable=False)
            uploaded += len(ciphertext)
    return oid, length, len(ciphertext), cipher_hash(ciphertext), uploaded, True


# --- main side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileItem:
    abs_path: Path
    rel: str
    st: os.stat_result


def walk(paths: list[Path], skipped: list[str]) -> tuple[list[Entry], list[_FileItem], list[str]]:
    """List directories and regular files under `paths`; symlinks and special files are skipped."""
    dirs: list[Entry] = []
    files: list[_FileItem] = []
    roots: list[str] = []
    for top in paths:
        st = os.lstat(top)  # raises FileNotFoundError, turned into a clear error by the caller
        name = unicodedata.normalize("NFC", top.resolve().name)
        if name in roots:
            raise FormatError(
                f"two deposited paths are both named {name!r}",
                hint="deposit them in separate folders",
            )
        roots.append(name)
        if stat.S_ISREG(st.st_mode):
            files.append(_FileItem(top, safe_path(name), st))
            continue
        if not stat.S_ISDIR(st.st_mode):
            skipped.append(str(top))
            continue
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames.sort()
            base = Path(dirpath)
            rel_dir = unicodedata.normalize("NFC", str(Path(name) / base.relative_to(top)))
            rel_dir = rel_dir.removesuffix("/.")
            dst = os.lstat(base)
            dirs.append(
                Entry(safe_path(rel_dir), "dir", entry_mode(dst.st_mode), int(dst.st_mtime))
            )
            for fn in sorted(filenames):
                p = base / fn
                fst = os.lstat(p)
                if not stat.S_ISREG(fst.st_mode):
                    skipped.append(str(p))
                    continue
                rel = unicodedata.normalize("NFC", f"{rel_dir}/{fn}")
                files.append(_FileItem(p, safe_path(rel), fst))
            # Symlinked directories appear in dirnames; os.walk does not enter them. Record them.
            for d in list(dirnames):
                if os.path.islink(base / d):
                    skipped.append(str(base / d))
    return dirs, files, roots


def _path_key(chunk_key: bytes, path: Path) -> str:
    return blake3.blake3(b"path\0" + os.fsencode(path.resolve()), key=chunk_key).hexdigest()


def _cached_chunks(
    state: LocalState, case_id: str, pkey: str, st: os.stat_result
) -> list[tuple[str, int]] | None:
    row = state.db.execute(
        "SELECT size, mtime_ns, ino, chunks FROM filecache WHERE case_id = ? AND pathkey = ?",
        [case_id, pkey],
    ).fetchone()
    if row is None or (row[0], row[1], row[2]) != (st.st_size, st.st_mtime_ns, st.st_ino):
        return None
    chunks = [tuple(c) for c in json.loads(row[3])]
    if not all(state.known_object(case_id, oid) for oid, _ in chunks):
        return None
    return chunks  # type: ignore[return-value]


def tree_hash(chunk_key: bytes, manifest_body: dict[str, Any]) -> str:
    """Keyed hash of what a snapshot contains, to skip snapshots identical to the last one."""
    keep = {k: manifest_body[k] for k in ("entries", "instructions", "roots")}
    return blake3.blake3(json.dumps(keep, sort_keys=True).encode(), key=chunk_key).hexdigest()


def deposit(
    state: LocalState,
    identity: Identity,
    case: CaseRecord,
    paths: list[Path],
    clock: Clock,
    *,
    instructions: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    jobs: int | None = None,
    s3_endpoint: str | None = None,
) -> DepositResult:
    """Deposit `paths` into `case` and return what was done. `progress(done, total)` in bytes."""
    policy = case.policy
    secrets = open_sealed(case.sealed_secrets, identity.box_key)
    chunk_key = bytes.fromhex(secrets["chunk_key"])
    seed = int(secrets["chunker_seed"])
    result = DepositResult(case=case.name, snapshot_id=None, seq=None)
    text = None
    if instructions is not None:
        raw = instructions.read_bytes()
        if len(raw) > MAX_INSTRUCTIONS_BYTES:
            raise FormatError(
                f"the instructions file is larger than {MAX_INSTRUCTIONS_BYTES // 1024} KiB"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError("the instructions file must be UTF-8 text") from exc
    try:
        dirs, files, roots = walk(paths, result.skipped)
    except FileNotFoundError as exc:
        raise NotFoundError(f"cannot deposit {exc.filename}: no such file or folder") from None
    result.dirs = len(dirs)
    result.files = len(files)
    result.bytes_total = sum(f.st.st_size for f in files)

    plan: list[tuple[_FileItem, str, list[tuple[str, int]] | None]] = []
    to_read = 0
    for item in files:
        pkey = _path_key(chunk_key, item.abs_path)
        cached = _cached_chunks(state, policy.case_id, pkey, item.st)
        plan.append((item, pkey, cached))
        if cached is None:
            to_read += item.st.st_size
        else:
            result.cached_files += 1

    jobs = jobs or (default_jobs() if to_read >= INLINE_BELOW else 1)
    stores = [open_store(u, s3_endpoint=s3_endpoint) for u in policy.stores]
    entries: list[Entry] = list(dirs)
    cache_rows: list[dict[str, Any]] = []
    done = 0
    initargs = (
        policy.case_id,
        list(policy.stores),
        s3_endpoint,
        chunk_key,
        policy.release_recipient,
        str(state.path),
    )
    with Pool(jobs, _init_worker, initargs) as pool:

        def tasks() -> Iterator[tuple[str, int, int]]:
            for item, _, cached in plan:
                if cached is None:
                    for off, length in chunk_file(item.abs_path, seed):
                        yield str(item.abs_path), off, length

        results = pool.imap(_store_chunk, tasks())
        pending_objects: list[dict[str, Any]] = []
        for item, pkey, cached in plan:
            chunks = cached
            if chunks is None:
                chunks = []
                remaining = item.st.st_size
                while remaining > 0:
                    oid, length, csize, chash, uploaded, new = next(results)
                    chunks.append((oid, length))
                    remaining -= length
                    result.bytes_read += length
                    result.bytes_uploaded += uploaded
                    if new:
                        result.new_chunks += 1
                        pending_objects.append(
                            {"case_id": policy.case_id, "oid": oid, "csize": csize, "chash": chash}
                        )
                    else:
                        result.known_chunks += 1
                    done += length
                    if progress:
                        progress(done, to_read)
                if remaining != 0:
                    raise FormatError(
                        f"{item.abs_path} changed while it was being read", hint="deposit again"
                    )
                # Record objects in batches, after a sync of every store: recorded objects are
                # durable everywhere, so a re-run need not upload them.
                if len(pending_objects) >= INDEX_BATCH:
                    _record(state, stores, pending_objects)
                    pending_objects = []
                cache_rows.append(
                    {
                        "case_id": policy.case_id,
                        "pathkey": pkey,
                        "size": item.st.st_size,
                        "mtime_ns": item.st.st_mtime_ns,
                        "ino": item.st.st_ino,
                        "chunks": json.dumps(chunks),
                    }
                )
            entries.append(
                Entry(
                    item.rel,
                    "file",
                    entry_mode(item.st.st_mode),
                    int(item.st.st_mtime),
                    item.st.st_size,
                    tuple(chunks),
                )
            )

        _record(state, stores, pending_objects)

    last = state.last_snapshot(policy.case_id)
    entries.sort(key=lambda e: e.path)
    manifest = Manifest(
        case_id=policy.case_id,
        policy_hash=policy.hash,
        seq=(last["seq"] + 1) if last else 1,
        created=clock.now(),
        parent=last["snap_id"] if last else None,
        label=case.name,
        chunk_key=chunk_key,
        chunker_seed=seed,
        entries=tuple(entries),
        instructions=text,
        roots=tuple(roots),
    )
    body = manifest.body()
    # Run the recipient's own checks before sealing: a snapshot recovery would refuse (two names
    # differing only in case or Unicode form, say) must be refused here, while the reporter can act.
    try:
        parse_manifest(body)
    except FormatError as exc:
        raise FormatError(
            f"this deposit cannot be recovered safely: {exc.message}",
            hint="rename one of the two files (names must differ by more than upper/lower case)",
        ) from exc
    thash = tree_hash(chunk_key, body)
    if last is not None and last["tree_hash"] == thash and last["policy_hash"] == policy.hash:
        result.unchanged = True
        result.snapshot_id, result.seq = last["snap_id"], last["seq"]
        _save_cache(state, cache_rows)
        return result
    snap_id, blob = seal_snapshot(manifest, identity.sign_key, policy.release_recipient)
    for store in stores:
        store.put(snapshot_key(policy.case_id, snap_id), blob)
    result.bytes_uploaded += len(blob) * len(stores)
    with state.tx():
        state.db["snapshots"].insert(
            {
                "snap_id": snap_id,
                "case_id": policy.case_id,
                "seq": manifest.seq,
                "created": manifest.created,
                "parent": manifest.parent,
                "files": len(files),
                "bytes": result.bytes_total,
                "tree_hash": thash,
                "policy_hash": policy.hash,
                "csize": len(blob),
                "chash": cipher_hash(blob),
            }
        )
    _save_cache(state, cache_rows)
    result.snapshot_id, result.seq = snap_id, manifest.seq
    return result


def _record(state: LocalState, stores: list[Store], objects: list[dict[str, Any]]) -> None:
    for store in stores:
        store.sync()
    if objects:
        with state.tx():
            state.db["objects"].insert_all(objects, replace=True)


def _save_cache(state: LocalState, rows: list[dict[str, Any]]) -> None:
    if rows:
        with state.tx():
            state.db["filecache"].insert_all(rows, replace=True)
