"""Deposits: walk, chunk, deduplicate, encrypt, replicate, then write the snapshot (format.md §6).

Ordering rule (format.md §6.6, "must"): every object a manifest names is in every store of the
case before the manifest is written, and the local index records an object only after all
stores hold it. A deposit killed at any point therefore leaves stores that are a superset of what
any manifest needs, and a re-run uploads only what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import stat
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from .chunker import chunk_file
from .clock import Clock
from .constants import CHUNK_AVG, MAX_INSTRUCTIONS_BYTES, PACK_BELOW, PACK_MAX, PACK_MAX_CHUNKS
from .errors import N_, FormatError, NotFoundError, StoreError
from .identity import Identity
from .manifest import Entry, Manifest, entry_mode, parse_manifest, safe_path, seal_snapshot
from .objects import (
    ChunkResult,
    cipher_hash,
    end_worker,
    init_deposit_worker,
    object_key,
    snapshot_key,
    store_task,
    stored_packed,
)
from .parallel import Pool, default_jobs
from .state import CaseRecord, LocalState, open_db, open_sealed
from .stores import Store, open_store

if TYPE_CHECKING:
    from .stores.warmup import StoreWarmup

log = logging.getLogger("velador.deposit")

INLINE_BELOW = 48 * 1024 * 1024
"""Below this many bytes to read, workers cost more to start than they save."""

INDEX_BATCH = 64
"""New objects per commit: one syncfs pair per store, then one index transaction (about 64 MiB
of chunks). Batches are cut by chunk, not by file, so one big file is committed as it goes."""


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
    changed: list[str] = field(default_factory=list)
    unchanged: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- main side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileItem:
    abs_path: Path
    rel: str
    st: os.stat_result
    real: str = ""
    """abs_path with every symlink resolved (what the file cache is keyed by), or "" if unknown."""


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
                N_("two deposited paths are both named %(name)r"),
                hint=N_("deposit them in separate folders"),
                name=name,
            )
        roots.append(name)
        real_top = str(top.resolve())
        if stat.S_ISREG(st.st_mode):
            files.append(_FileItem(top, safe_path(name), st, real_top))
            continue
        if not stat.S_ISDIR(st.st_mode):
            skipped.append(str(top))
            continue
        # Below `top` nothing needs resolving: os.walk enters no symlinked folder and only
        # regular files are kept, so the resolved path is the resolved top plus the rest.
        cut = len(os.fspath(top))
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames.sort()
            base = Path(dirpath)
            real_dir = real_top + dirpath[cut:]
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
                files.append(_FileItem(p, safe_path(rel), fst, f"{real_dir}/{fn}"))
            # Symlinked directories appear in dirnames; os.walk does not enter them. Record them.
            for d in list(dirnames):
                if os.path.islink(base / d):
                    skipped.append(str(base / d))
    return dirs, files, roots


def may_upload(db_path: Path, case_id: str, paths: list[Path]) -> bool:
    """Whether a deposit of `paths` is likely to upload: the case's file cache is empty, or some
    regular file's (size, mtime, inode) is in none of its rows. A guess made without the keys
    (before the passphrase), only to decide whether to get the S3 stores ready in the background
    (vault/stores/warmup.py): an unchanged re-deposit then does not pay for importing boto3. A
    wrong guess costs time, never correctness; a failure answers False (the deposit itself will
    meet and report it)."""
    import sqlite3

    try:
        # A guess never waits long for a lock (WAL readers seldom meet one anyway).
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=0.2)
        try:
            seen = set(
                db.execute("SELECT size, mtime_ns, ino FROM filecache WHERE case_id = ?", [case_id])
            )
        finally:
            db.close()
        if not seen:
            return True
        return any((st.st_size, st.st_mtime_ns, st.st_ino) not in seen for st in _stats(paths))
    except (OSError, sqlite3.Error):
        return False


def _stats(paths: list[Path]) -> Iterator[os.stat_result]:
    """The lstat of each regular file under `paths`, lazily (`may_upload` stops at a new one)."""
    for top in paths:
        st = os.lstat(top)
        if stat.S_ISREG(st.st_mode):
            yield st
        elif stat.S_ISDIR(st.st_mode):
            for dirpath, _, filenames in os.walk(top, followlinks=False):
                for fn in filenames:
                    fst = os.lstat(os.path.join(dirpath, fn))
                    if stat.S_ISREG(fst.st_mode):
                        yield fst


def _path_key(chunk_key: bytes, item: _FileItem) -> str:
    real = item.real or str(item.abs_path.resolve())
    return blake3.blake3(b"path\0" + os.fsencode(real), key=chunk_key).hexdigest()


CACHE_BATCH = 500
"""Files looked up in the file cache per query: two queries per batch, not two per file (2,000
files: 0.5 s of a 1.0 s unchanged re-deposit), and memory bounded whatever the tree."""


def _cached_batch(
    state: LocalState, case_id: str, batch: list[tuple[str, os.stat_result]]
) -> list[list[tuple[str, int]] | None]:
    """For each (path key, stat) of `batch`: its chunks if the cache still describes the file
    and every chunk is known to be in every store, else None."""
    rows = {
        pkey: (size, mtime_ns, ino, chunks)
        for pkey, size, mtime_ns, ino, chunks in state.db.execute(
            "SELECT pathkey, size, mtime_ns, ino, chunks FROM filecache WHERE case_id = ? "
            "AND pathkey IN (SELECT value FROM json_each(?))",
            [case_id, json.dumps([pkey for pkey, _ in batch])],
        )
    }
    out: list[list[tuple[str, int]] | None] = []
    for pkey, st in batch:
        row = rows.get(pkey)
        if row is None or row[:3] != (st.st_size, st.st_mtime_ns, st.st_ino):
            out.append(None)
        else:
            out.append([(str(oid), int(n)) for oid, n in json.loads(row[3])])
    # One query for the whole batch: every chunk must still be known to be in every store.
    wanted = {oid for chunks in out if chunks for oid, _ in chunks}
    if not wanted:
        return out
    known = {
        oid
        for (oid,) in state.db.execute(
            "SELECT oid FROM known WHERE case_id = ? AND oid IN (SELECT value FROM json_each(?))",
            [case_id, json.dumps(sorted(wanted))],
        )
    }
    if len(known) == len(wanted):
        return out
    return [c if c is not None and all(o in known for o, _ in c) else None for c in out]


def tree_hash(chunk_key: bytes, manifest_body: dict[str, Any]) -> str:
    """Keyed hash of what a snapshot contains, to skip snapshots identical to the last one."""
    keep = {k: manifest_body[k] for k in ("entries", "instructions", "roots")}
    return blake3.blake3(json.dumps(keep, sort_keys=True).encode(), key=chunk_key).hexdigest()


class _Peek(Iterator[ChunkResult]):
    """An iterator whose next item can be looked at without taking it."""

    def __init__(self, it: Iterator[ChunkResult]) -> None:
        self._it = it
        self._next: ChunkResult | None = None

    def peek(self) -> ChunkResult | None:
        if self._next is None:
            self._next = next(self._it, None)
        return self._next

    def __next__(self) -> ChunkResult:
        item = self.peek()
        if item is None:
            raise StopIteration
        self._next = None
        return item


@dataclass
class _Batch:
    staged: list[list[tuple[str, str]]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    repair: list[str] = field(default_factory=list)
    packed: list[dict[str, Any]] = field(default_factory=list)
    """Chunks stored in packs (format.md §6.3 "Packs"): recorded with the objects of the batch."""


class _Committer:
    """Commits staged objects to every store, then records them, one batch at a time.

    It runs in a thread so that the syncfs of one batch overlaps the encryption of the next. The
    order inside a batch is the rule of format.md §6.6: every store holds every object durably
    (commit, or sync for objects found already there) before any of them is recorded.
    """

    def __init__(self, db_path: Path, case_id: str, stores: list[Store]) -> None:
        self._db_path, self._case_id, self._stores = db_path, case_id, stores
        self._q: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="velador-commit", daemon=True)
        self._thread.start()

    def submit(self, batch: _Batch) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(batch)

    def close(self, raise_error: bool = True) -> None:
        """Wait until every submitted batch is committed and recorded; raise its error if any."""
        self._q.put(None)
        self._thread.join()
        if self._error is not None and raise_error:
            raise self._error

    def _run(self) -> None:
        db = open_db(self._db_path)
        try:
            while (batch := self._q.get()) is not None:
                if self._error is None:
                    try:
                        self._commit(db, batch)
                    except BaseException as exc:  # raised in the main thread by submit/close
                        self._error = exc
        finally:
            db.conn.close()

    def _commit(self, db: Any, batch: _Batch) -> None:
        for store, staged in zip(self._stores, batch.staged, strict=True):
            staged = [(k, t) for k, t in staged if t]
            if staged:
                store.commit(staged)
            elif batch.rows:
                store.sync()  # objects a cut-off run left there become durable before recording
        rows = {r["oid"]: r for r in batch.rows}
        for oid in batch.repair:
            rows[oid] = self._make_replicas_identical(oid)
        if rows or batch.packed:
            with db.conn:  # a pack and the chunks it holds: one transaction (format.md §6.6)
                if rows:
                    db["objects"].insert_all(list(rows.values()), replace=True)
                if batch.packed:
                    db["packed"].insert_all(batch.packed, replace=True)

    def _make_replicas_identical(self, oid: str) -> dict[str, Any]:
        # Two workers encrypted one chunk at once and a store without staging (S3) took both
        # PUTs: copy the first store's bytes to the others, so that replicas stay identical.
        key = object_key(self._case_id, oid)
        data = self._stores[0].get(key)
        chash = cipher_hash(data)
        for store in self._stores[1:]:
            if cipher_hash(store.get(key)) != chash:
                store.put(key, data)
        return {"case_id": self._case_id, "oid": oid, "csize": len(data), "chash": chash}


_Todo = tuple[int, "_FileItem", str]
"""A file to read: (index in this pass, the file as listed, its cache key)."""
_Done = tuple["_FileItem", str, list[tuple[str, int]]]
"""A file read whole and unchanged: (the file, its cache key, its chunks)."""


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


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
    limit_upload: int | None = None,
    warm: StoreWarmup | None = None,
) -> DepositResult:
    """Deposit `paths` into `case` and return what was done. `progress(done, total)` in bytes.

    `limit_upload`: at most this many bytes per second to the S3 stores, over every process of
    the deposit (vault/stores/ratelimit.py). `warm`: the case's stores, made ready in the
    background since before the passphrase was asked for (vault/stores/warmup.py); without it
    they are opened here."""
    from .stores.gate import one_upload_per_store
    from .stores.ratelimit import limited

    opener = warm.open if warm is not None else open_store
    args = (state, identity, case, paths, clock, instructions, progress, jobs, s3_endpoint, opener)
    with limited(limit_upload), one_upload_per_store():
        try:
            return _deposit(*args)
        except _Vanished:
            # An object the listing showed was deleted before the snapshot: it is forgotten
            # again, and one more pass (a fresh listing) uploads it (format.md §6.6).
            try:
                return _deposit(*args)
            except _Vanished as exc:
                raise StoreError(
                    N_("objects of this case disappear from store %(store)s while it is written"),
                    hint=N_(
                        "check that nothing else deletes from that bucket (lifecycle rules, "
                        "another program), then deposit again"
                    ),
                    store=exc.store,
                ) from None


def _deposit(
    state: LocalState,
    identity: Identity,
    case: CaseRecord,
    paths: list[Path],
    clock: Clock,
    instructions: Path | None,
    progress: Callable[[int, int], None] | None,
    jobs: int | None,
    s3_endpoint: str | None,
    opener: Callable[..., Store],
) -> DepositResult:
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
                N_("the instructions file is larger than %(kib)s KiB"),
                hint=N_("shorten the instructions, or deposit the long text as a file of the case"),
                kib=MAX_INSTRUCTIONS_BYTES // 1024,
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(
                N_("the instructions file must be UTF-8 text"),
                hint=N_("save the instructions as plain UTF-8 text"),
            ) from exc
    try:
        dirs, files, roots = walk(paths, result.skipped)
    except FileNotFoundError as exc:
        raise NotFoundError(
            N_("cannot deposit %(filename)s: no such file or folder"),
            hint=N_(
                "check the path; a folder that was moved or renamed must be given by its new name"
            ),
            filename=exc.filename,
        ) from None
    result.dirs = len(dirs)

    entries: list[Entry] = list(dirs)
    cache_rows: list[dict[str, Any]] = []
    todo: list[tuple[int, _FileItem, str]] = []
    for start in range(0, len(files), CACHE_BATCH):
        batch = [(item, _path_key(chunk_key, item)) for item in files[start : start + CACHE_BATCH]]
        found = _cached_batch(state, policy.case_id, [(pkey, item.st) for item, pkey in batch])
        for (item, pkey), cached in zip(batch, found, strict=True):
            if cached is None:
                todo.append((len(todo), item, pkey))
            else:
                result.cached_files += 1
                entries.append(_file_entry(item, cached))
    to_read = sum(item.st.st_size for _, item, _ in todo)
    # Small files first, in the order listed, so that they fall into packs (format.md §6.3):
    # the groups then depend only on the files to read, and a run cut off after storing a pack
    # makes the same pack again and finds it in the stores.
    todo.sort(key=lambda t: t[1].st.st_size >= PACK_BELOW)

    stores: list[Store] | None = None
    if todo:
        jobs = jobs or (default_jobs() if to_read >= INLINE_BELOW else 1)
        stores = [opener(u, s3_endpoint=s3_endpoint) for u in policy.stores]
        listed = _list_unrecorded(state, policy.case_id, stores, _chunks_at_most(todo))
        initargs = (
            policy.case_id,
            _for_workers(policy.stores, stores),
            s3_endpoint,
            chunk_key,
            policy.release_recipient,
            str(state.path),
            listed,
        )
        reader = _Reader(result, stores, policy.case_id, seed, progress, to_read)
        committer = _Committer(state.path, policy.case_id, stores)
        try:
            with Pool(jobs, init_deposit_worker, initargs, cleanup=end_worker) as pool:
                done, changed = reader.run(pool, committer, todo)
                if changed:
                    # Read a file that changed under us once more, from a fresh listing; one that
                    # changes again is left out with a warning, never stored half old, half new.
                    retry = _relisted(changed)
                    reader.total += sum(item.st.st_size for _, item, _ in retry)
                    done2, changed = reader.run(pool, committer, retry)
                    done += done2
                reader.flush(committer)
        except BaseException:
            committer.close(raise_error=False)
            raise
        committer.close()
        _confirm_listed(state, policy.case_id, stores, listed, reader.assumed)
        for item, _, chunks in done:
            entries.append(_file_entry(item, chunks))
        for _, item, _ in changed:
            result.changed.append(str(item.abs_path))
        if changed:
            # Reported to the user, with the paths, by the caller from `result.changed`
            # (cli/data_cmds.py). Logs may be kept or collected (the agent runs for days): a
            # path names the reporter's folders and sources, so the log says only how many.
            log.info(
                "%d file(s) changed while being read and were left out of this snapshot",
                len(changed),
            )
        cache_rows = [
            {
                "case_id": policy.case_id,
                "pathkey": pkey,
                "size": item.st.st_size,
                "mtime_ns": item.st.st_mtime_ns,
                "ino": item.st.st_ino,
                "chunks": json.dumps(chunks),
            }
            for item, pkey, chunks in done
        ]
    result.files = sum(1 for e in entries if e.type == "file")
    result.bytes_total = sum(e.size for e in entries)

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
        **_placement(state, policy.case_id, entries),
    )
    body = manifest.body()
    thash = tree_hash(chunk_key, body)
    if last is not None and last["tree_hash"] == thash and last["policy_hash"] == policy.hash:
        # The same tree as the last snapshot, which passed the checks below when it was made.
        result.unchanged = True
        result.snapshot_id, result.seq = last["snap_id"], last["seq"]
        _save_cache(state, cache_rows)
        return result
    # Run the recipient's own checks before sealing: a snapshot recovery would refuse (two names
    # differing only in case or Unicode form, say) must be refused here, while the reporter can act.
    try:
        parse_manifest(body)
    except FormatError as exc:
        raise FormatError(
            N_("this deposit cannot be recovered safely: %(detail)s"),
            hint=N_(
                "rename one of the two files (names must differ by more than upper/lower case)"
            ),
            detail=exc,
        ) from exc
    snap_id, blob = seal_snapshot(manifest, identity.sign_key, policy.release_recipient)
    # Every object the manifest names is durable in every store (the committer has finished).
    # The stores the objects went to, with their S3 clients built already, if any were opened.
    if stores is None:
        stores = [opener(u, s3_endpoint=s3_endpoint) for u in policy.stores]
    for store in stores:
        store.put(snapshot_key(policy.case_id, snap_id), blob)
    result.bytes_uploaded += len(blob) * len(policy.stores)
    with state.tx():
        state.db["snapshots"].insert(
            {
                "snap_id": snap_id,
                "case_id": policy.case_id,
                "seq": manifest.seq,
                "created": manifest.created,
                "parent": manifest.parent,
                "files": result.files,
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


def remember_forms(state: LocalState, case_id: str, oids: set[str]) -> None:
    """Before objects are forgotten from the index (vault.verify.forget_missing), keep their
    stored sizes in the case's `extra["forms"]`: if every copy of one is lost and a deposit makes
    it again, it must get the form the manifests naming it give (format.md §6.3)."""
    if not oids:
        return
    rows = state.db.execute(
        "SELECT oid, csize FROM objects WHERE case_id = ? AND oid IN "
        "(SELECT value FROM json_each(?))",
        [case_id, json.dumps(sorted(oids))],
    ).fetchall()
    known = {oid: int(csize) for oid, csize in rows if csize}
    if known:
        case = state.db.execute("SELECT extra FROM cases WHERE case_id = ?", [case_id]).fetchone()
        forms = json.loads(case[0] or "{}").get("forms", {}) if case else {}
        state.set_case_extra(case_id, "forms", {**forms, **known})


def _placement(state: LocalState, case_id: str, entries: list[Entry]) -> dict[str, Any]:
    """Where and in which form each chunk of `entries` is stored (format.md §6.3, §6.4), read
    back from the index: every chunk a manifest names is known by now (§6.6). A chunk is an
    object of its own, or in a pack (`packed`); a stored size tells an object's form
    (`objects.stored_packed`), whichever run stored it. Returns the Manifest's `zstd`, `packs`
    and `placed`."""
    lengths = {oid: n for e in entries for oid, n in e.chunks}
    if not lengths:
        return {}
    wanted = json.dumps(sorted(lengths))
    own = dict(
        state.db.execute(
            "SELECT oid, csize FROM objects WHERE case_id = ? AND oid IN "
            "(SELECT value FROM json_each(?))",
            [case_id, wanted],
        ).fetchall()
    )
    zstd = {oid for oid, csize in own.items() if stored_packed(int(csize or 0), lengths[oid])}
    packs: dict[str, int] = {}
    placed: dict[str, tuple[str, int]] = {}
    for oid, pack, poff, plen, csize in state.db.execute(
        "SELECT p.oid, p.pack, p.poff, p.plen, o.csize FROM packed p JOIN objects o "
        "ON o.case_id = p.case_id AND o.oid = p.pack WHERE p.case_id = ? AND p.oid IN "
        "(SELECT value FROM json_each(?))",
        [case_id, wanted],
    ):
        if oid in own:  # an object of its own too: the plainer reference wins (§6.3)
            continue
        placed[oid] = (pack, int(poff))
        packs[pack] = int(plen)
        if stored_packed(int(csize or 0), int(plen)):
            zstd.add(pack)
    return {"zstd": frozenset(zstd), "packs": packs, "placed": placed}


def _file_entry(item: _FileItem, chunks: list[tuple[str, int]]) -> Entry:
    st = item.st
    return Entry(
        item.rel, "file", entry_mode(st.st_mode), int(st.st_mtime), st.st_size, tuple(chunks)
    )


def _relisted(
    changed: list[tuple[int, _FileItem, str]],
) -> list[tuple[int, _FileItem, str]]:
    out = []
    for i, (_, item, pkey) in enumerate(changed):
        try:
            st = os.lstat(item.abs_path)
        except FileNotFoundError:
            continue  # deleted meanwhile: nothing to deposit
        if stat.S_ISREG(st.st_mode):
            out.append((i, _FileItem(item.abs_path, item.rel, st), pkey))
    return out


def _group_task(group: list[tuple[int, str, int, int, int]]) -> tuple[str, Any]:
    """A worker task for a group of chunks (format.md §6.3 "Packs"); one chunk alone is no pack."""
    if len(group) == 1:
        return "chunk", group[0]
    return "pack", group


class _Reader:
    """One pass over files to read: chunk here, hash/encrypt/stage in the pool, batch commits."""

    def __init__(
        self,
        result: DepositResult,
        stores: list[Store],
        case_id: str,
        seed: int,
        progress: Callable[[int, int], None] | None,
        total: int,
    ) -> None:
        self.result, self.case_id, self.seed = result, case_id, seed
        self.progress, self.total, self.done_bytes = progress, total, 0
        self.nstores = len(stores)
        self.batch = self._new_batch()
        # New objects of the last few batches: a chunk seen twice before its first copy is
        # recorded must not be counted or recorded twice. At most two submitted batches wait to
        # be recorded (the committer's queue holds one), and a worker looks a chunk up in the
        # index at most a pool window (8 tasks, each one object: a chunk or a pack, so one
        # flush, which counts objects) before its result is read: six batches cover it, and
        # memory stays bounded whatever the size of the deposit.
        self.seen: deque[set[str]] = deque([set()], maxlen=6)
        self.assumed: set[str] = set()
        """New objects recorded without this run's PUT in some store (found there already)."""
        self.pack_len: dict[str, int] = {}
        """Length of each pack this run met lately, for its chunks' `packed` rows."""

    def _new_batch(self) -> _Batch:
        return _Batch([[] for _ in range(self.nstores)])

    def flush(self, committer: _Committer) -> None:
        if self.batch.rows or self.batch.repair or self.batch.packed or any(self.batch.staged):
            committer.submit(self.batch)
            self.batch = self._new_batch()
            self.seen.append(set())

    def run(
        self, pool: Pool, committer: _Committer, todo: list[tuple[int, _FileItem, str]]
    ) -> tuple[
        list[tuple[_FileItem, str, list[tuple[str, int]]]], list[tuple[int, _FileItem, str]]
    ]:
        seed = self.seed

        def tasks() -> Iterator[tuple[str, Any]]:
            group: list[tuple[int, str, int, int, int]] = []
            size = 0
            for findex, item, _ in todo:
                if item.st.st_size == 0:
                    continue
                path = str(item.abs_path)
                ino = item.st.st_ino
                if item.st.st_size < PACK_BELOW:
                    # A small file is one chunk: into the current pack (format.md §6.3).
                    if group and (
                        size + item.st.st_size > PACK_MAX or len(group) >= PACK_MAX_CHUNKS
                    ):
                        yield _group_task(group)
                        group, size = [], 0
                    group.append((findex, path, ino, 0, item.st.st_size))
                    size += item.st.st_size
                    continue
                if group:
                    yield _group_task(group)
                    group, size = [], 0
                # A large file: its consecutive chunks in packs of at most PACK_MAX bytes.
                n = 0
                try:
                    for off, length in chunk_file(item.abs_path, seed):
                        n += 1
                        if group and size + length > PACK_MAX:
                            yield _group_task(group)
                            group, size = [], 0
                        group.append((findex, path, ino, off, length))
                        size += length
                except FileNotFoundError:
                    pass
                if group:
                    yield _group_task(group)
                    group, size = [], 0
                if n == 0:  # gone or emptied since it was listed: let the consumer know
                    yield "chunk", (findex, path, ino, 0, 0)
            if group:
                yield _group_task(group)

        results = _Peek(r for rs in pool.imap(store_task, tasks()) for r in rs)
        done: list[_Done] = []
        changed: list[_Todo] = []
        for findex, item, pkey in todo:
            chunks: list[tuple[str, int]] = []
            moved = False
            expect = 0
            # Every result is tagged with the file it belongs to: a file that shrank or grew
            # can never lend chunks to, or take chunks from, its neighbours.
            while (r := results.peek()) is not None and r[0] == findex:
                next(results)
                _, off, oid, length, csize, chash, uploaded, new, tokens, ch, where, pack = r
                if pack is not None:  # staged like any object, whatever becomes of this file
                    self._account_object(*pack)
                if ch:
                    moved = True  # the rest of this file's results still arrive, read below
                    continue
                # Every object read is whole and named by its own bytes: keep it even if the
                # file turns out to have changed (its staged copies are committed all the same).
                self._account(oid, length, csize, chash, uploaded, new, tokens, where)
                if len(self.batch.rows) >= INDEX_BATCH:
                    self.flush(committer)
                if moved:
                    continue
                if off != expect:
                    raise RuntimeError(f"chunk results out of order at {off}, expected {expect}")
                expect += length
                chunks.append((oid, length))
            if item.st.st_size and not moved:
                # The workers have read every chunk: the file must still be what was listed.
                try:
                    now = _stat_key(os.stat(item.abs_path))
                except FileNotFoundError:
                    now = None
                moved = expect != item.st.st_size or now != _stat_key(item.st)
            if moved:
                changed.append((findex, item, pkey))
            else:
                done.append((item, pkey, chunks))
        if (r := results.peek()) is not None:
            raise RuntimeError(f"a chunk result names an unknown file ({r[0]})")
        return done, changed

    def _account(
        self,
        oid: str,
        length: int,
        csize: int,
        chash: str | None,
        uploaded: int,
        new: bool,
        tokens: list[tuple[int, str]],
        where: tuple[str, int] | None = None,
    ) -> None:
        res = self.result
        res.bytes_read += length
        self.done_bytes += length
        if where is not None:
            # In a pack staged by this run: recorded with the pack (format.md §6.6), counted
            # as a new chunk the first time only.
            pid, poff = where
            self.batch.packed.append(
                {
                    "case_id": self.case_id,
                    "oid": oid,
                    "pack": pid,
                    "poff": poff,
                    "plen": self.pack_len[pid],
                }
            )
            fresh = new and not any(oid in gen for gen in self.seen)
            if fresh:
                self.seen[-1].add(oid)
        else:
            fresh = self._record(oid, csize, chash, uploaded, new, tokens)
        if fresh:
            res.new_chunks += 1
        else:
            res.known_chunks += 1
        if self.progress:
            self.progress(self.done_bytes, self.total)

    def _account_object(
        self,
        pid: str,
        plen: int,
        csize: int,
        chash: str | None,
        uploaded: int,
        new: bool,
        tokens: list[tuple[int, str]],
    ) -> None:
        """A pack this run stored or found stored: an object like a chunk (format.md §6.3)."""
        self.pack_len[pid] = plen
        if len(self.pack_len) > 4096:  # bounded: a pack's chunks follow it closely
            self.pack_len.pop(next(iter(self.pack_len)))
        self._record(pid, csize, chash, uploaded, new, tokens)  # not a chunk: no tally

    def _record(
        self,
        oid: str,
        csize: int,
        chash: str | None,
        uploaded: int,
        new: bool,
        tokens: list[tuple[int, str]],
    ) -> bool:
        """Stage and record one object (a chunk or a pack); whether it is new to this run."""
        key = object_key(self.case_id, oid)
        for i, token in tokens:
            self.batch.staged[i].append((key, token))
        if not new:
            return False
        if any(oid in gen for gen in self.seen):
            # The same object twice in one run: the first copy staged wins (vault.stores), but a
            # store that cannot stage may have taken both; the committer evens them out.
            if any(not t for _, t in tokens):
                self.batch.repair.append(oid)
            return False
        self.seen[-1].add(oid)
        if len(tokens) < self.nstores:
            self.assumed.add(oid)
        self.result.bytes_uploaded += uploaded
        self.batch.rows.append(
            {"case_id": self.case_id, "oid": oid, "csize": csize, "chash": chash}
        )
        return True


class _Vanished(Exception):
    """An object a listing showed was gone when the deposit checked before its snapshot."""

    def __init__(self, store: str) -> None:
        super().__init__(store)
        self.store = store


def _for_workers(urls: list[str], stores: list[Store]) -> list[str | Store]:
    """What each worker opens its stores from: the deposit's own S3 stores, whose one boto3
    client (built already, for the listing) worker threads share; each worker building its own
    delayed the first upload by a tenth of a second or more (issue 14). A worker process gets a
    pickled S3 store, rebuilt there with a fresh client as from its URL. Other stores cost nothing
    to open and go by URL, each worker opening its own as before."""
    from .stores.warmup import is_s3_url

    return [s if is_s3_url(u) else u for u, s in zip(urls, stores, strict=True)]


def _chunks_at_most(todo: list[_Todo]) -> int:
    """About the most chunks reading `todo` can yield (average-size chunks, one per small file)."""
    return sum(max(1, -(-item.st.st_size // CHUNK_AVG)) for _, item, _ in todo)


def _object_prefix(case_id: str) -> str:
    return object_key(case_id, "00")[: -len("00/00")]


def _list_unrecorded(
    state: LocalState, case_id: str, stores: list[Store], chunks: int
) -> list[dict[str, int] | None]:
    """Per store, the objects of the case it holds that the index does not know, with sizes
    (format.md §6.6): objects a cut-off run uploaded and did not record. The deposit then sends
    no HEAD per chunk to a store that lists (S3): one LIST per 1,000 objects, once.

    A store that does not list (a folder: a stat is cheaper), or whose listing would take more
    requests than the chunks the deposit may check (a few new chunks in a large case), gets
    None: its workers ask it per chunk, as before."""
    known_n = state.db.execute(
        "SELECT count(*) FROM objects WHERE case_id = ?", [case_id]
    ).fetchone()[0]
    prefix = _object_prefix(case_id)
    out: list[dict[str, int] | None] = []
    for store in stores:
        page = int(getattr(store, "page_size", 1000))
        if not getattr(store, "check_by_listing", False) or known_n // page + 1 > chunks:
            out.append(None)
            continue
        found: dict[str, int] = {}
        batch: list[tuple[str, int]] = []
        for key, size in store.list_sizes(prefix):
            batch.append((key, size))
            if len(batch) >= 1000:
                found.update(_not_in_index(state, case_id, batch))
                batch = []
        found.update(_not_in_index(state, case_id, batch))
        out.append(found)
    return out


def _not_in_index(
    state: LocalState, case_id: str, listed: list[tuple[str, int]]
) -> Iterator[tuple[str, int]]:
    oids = {key.rpartition("/")[2]: (key, size) for key, size in listed}
    # Only keys laid out as this case's objects count; anything else in the prefix is foreign.
    oids = {o: ks for o, ks in oids.items() if ks[0] == object_key(case_id, o)}
    if not oids:
        return iter(())
    known = {
        oid
        for (oid,) in state.db.execute(
            "SELECT oid FROM objects WHERE case_id = ? AND oid IN (SELECT value FROM json_each(?))",
            [case_id, json.dumps(sorted(oids))],
        )
    }
    return (ks for o, ks in oids.items() if o not in known)


def _confirm_listed(
    state: LocalState,
    case_id: str,
    stores: list[Store],
    listed: list[dict[str, int] | None],
    assumed: set[str],
) -> None:
    """Before any snapshot names them, check that the objects recorded because the listing at
    the start showed them (not because this run's PUT was acknowledged) are still there: one more
    listing of each store that was listed. A missing one is forgotten and `_Vanished` raised, so
    that the deposit runs again and uploads it (format.md §6.6)."""
    if not assumed:
        return
    keys = {object_key(case_id, oid): oid for oid in assumed}
    for store, before in zip(stores, listed, strict=True):
        if before is None:
            continue
        there = {key for key, _ in store.list_sizes(_object_prefix(case_id)) if key in keys}
        gone = [oid for key, oid in keys.items() if key not in there]
        if gone:
            log.warning("%d object(s) vanished from a store during a deposit", len(gone))
            with state.tx():
                state.db.execute(
                    "DELETE FROM objects WHERE case_id = ? AND oid IN "
                    "(SELECT value FROM json_each(?))",
                    [case_id, json.dumps(gone)],
                )
            raise _Vanished(store.url)


def _save_cache(state: LocalState, rows: list[dict[str, Any]]) -> None:
    if rows:
        with state.tx():
            state.db["filecache"].insert_all(rows, replace=True)
