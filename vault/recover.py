"""Recovery: shares → key → snapshot chain → files, verified at every step (format.md §9).

Everything read here is hostile until checked: envelopes (reporter signatures, both layers),
shares (SLIP-39 checksums and digest, then the policy's age recipient), snapshots (id = hash of
the ciphertext, reporter signature, chain links), chunks (AEAD, then the keyed id), and paths
(`manifest.safe_path`, then no symlink or non-directory on the way, inside the output folder).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrage import x25519

from .constants import PACK_MAX_CHUNKS
from .errors import (
    N_,
    FormatError,
    NotFoundError,
    PolicyError,
    ShareError,
    StoreError,
    UnsafePathError,
    VeladorError,
)
from .manifest import Entry, Manifest, open_snapshot_body, read_signed_manifest
from .objects import (
    end_worker,
    fetch_chunk,
    forget_pack,
    init_recover_worker,
    release_file,
    snapshot_prefix,
)
from .parallel import Pool, default_jobs
from .policy import Policy
from .shares import age_identity_str, combine_any
from .stores import Store, open_store
from .stores.local import sync_filesystem

INLINE_BELOW = 48 * 1024 * 1024


@dataclass
class Report:
    """What recovery found and did, for the provenance summary and --json."""

    shares_used: list[str] = field(default_factory=list)
    shares_skipped: list[str] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    chain_intact: bool = True
    chain_problems: list[str] = field(default_factory=list)
    store_problems: list[str] = field(default_factory=list)
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    instructions: str | None = None
    out: str = ""
    policy_choice: dict[str, Any] | None = None
    """Network recovery: why the policy was trusted ({"by": "card" | "contact" | "majority",
    "agreeing": n, "serving": m}, vault.netrecover.Gathered.chosen_by)."""


_MORE_SHARES = N_(
    "more escrow nodes must release the case, or add offline share files with --shares"
)


def recover_key(policy: Policy, mnemonics: list[str], report: Report) -> bytes:
    """Combine the opened shares into the release secret or say exactly what is missing."""
    if not mnemonics:
        single = len(policy.spec.groups) == 1
        raise ShareError(
            N_("no valid share could be opened (this case needs %(k)d of %(n)d)")
            if single
            else N_("no valid share could be opened (this case needs %(spec)s)"),
            hint=N_("check that the shares are addressed to your identity"),
            spec=policy.spec.describe(),
            k=policy.spec.groups[0][0],
            n=policy.spec.groups[0][1],
        )
    try:
        secret, _ = combine_any(mnemonics, policy.release_recipient)
        return secret
    except ShareError:
        pass
    if len(policy.spec.groups) == 1:
        k = policy.spec.groups[0][0]
        have = len(set(mnemonics))
        if have < k:
            raise ShareError(
                N_("only %(have)d valid shares of the %(k)d needed (%(missing)d missing)")
                if have != 1
                else N_("only %(have)d valid share of the %(k)d needed (%(missing)d missing)"),
                hint=_MORE_SHARES,
                have=have,
                k=k,
                missing=k - have,
            )
    raise ShareError(
        N_("the %(count)d valid shares are not enough for %(k)d of %(n)d")
        if len(policy.spec.groups) == 1
        else N_("the %(count)d valid shares are not enough for %(spec)s"),
        hint=_MORE_SHARES,
        count=len(mnemonics),
        spec=policy.spec.describe(),
        k=policy.spec.groups[0][0],
        n=policy.spec.groups[0][1],
    )


# --- snapshot chain ----------------------------------------------------------------------------


def _open_any(
    policy: Policy, identities: list[x25519.Identity], stores: list[Store], sid: str, report: Report
) -> Manifest | None:
    """The first copy of snapshot `sid` that verifies; one damaged replica must not lose it.

    A copy whose signature verifies but whose body breaks the rules (an unsafe path, say) is not
    skipped: every good replica holds the same bytes, and the user must see the real reason.
    """
    key = f"{snapshot_prefix(policy.case_id)}{sid}"
    for store in stores:
        try:
            blob = store.get(key)
            body = open_snapshot_body(
                blob, identities, policy.reporter.sign_pk, sid, policy.case_id
            )
        except NotFoundError:
            report.store_problems.append(f"{store.url}: missing {key}")
            continue
        except VeladorError as exc:
            report.chain_problems.append(f"snapshot {sid[:12]} in {store.url}: {exc.message}")
            continue
        return read_signed_manifest(body, sid)
    return None


def load_chain(
    policy: Policy, identities: list[x25519.Identity], stores: list[Store], report: Report
) -> list[Manifest]:
    """All snapshots of the case, oldest first, with the hash chain checked."""
    ids: set[str] = set()
    reachable = 0
    for store in stores:
        try:
            for key in store.list(snapshot_prefix(policy.case_id)):
                ids.add(key.rsplit("/", 1)[-1])
            reachable += 1
        except StoreError as exc:
            report.store_problems.append(f"{store.url}: {exc.message}")
    if not reachable:
        raise StoreError(
            N_("no store of the case could be reached"), hint=N_("check the network or use --store")
        )
    manifests: dict[str, Manifest] = {}
    for sid in sorted(ids):
        m = _open_any(policy, identities, stores, sid, report)
        if m is None:
            report.chain_intact = False
        else:
            manifests[sid] = m
    if not manifests:
        raise NotFoundError(
            N_("the stores hold no readable snapshot of this case"),
            hint=N_(
                "nothing was deposited yet, or the stores were emptied; 'velador verify --deep' "
                "checks each store"
            ),
        )
    by_seq: dict[int, list[str]] = {}
    for sid, m in manifests.items():
        by_seq.setdefault(m.seq, []).append(sid)
    head_seq = max(by_seq)
    if len(by_seq[head_seq]) > 1:
        report.chain_intact = False
        report.chain_problems.append(f"two different snapshots claim number {head_seq}")
    # Walk back from the head; a visited set stops any cycle a hostile store could contrive.
    chain: list[tuple[str, Manifest]] = []
    sid: str | None = sorted(by_seq[head_seq])[0]
    seen: set[str] = set()
    while sid is not None:
        if sid in seen:
            raise FormatError(
                N_("the snapshot chain loops back on itself"),
                hint=N_(
                    "the store holds forged snapshots; tell the reporter and do not trust this "
                    "store"
                ),
            )
        seen.add(sid)
        m = manifests.get(sid)
        if m is None:
            report.chain_intact = False
            report.chain_problems.append(f"snapshot {sid[:12]} is missing from every store")
            break
        if chain and m.seq != chain[-1][1].seq - 1:
            report.chain_intact = False
            report.chain_problems.append(f"snapshot {sid[:12]} has an out-of-order number")
        chain.append((sid, m))
        sid = m.parent
    if chain and chain[-1][1].seq != 1:
        report.chain_intact = False
    chain.reverse()
    orphans = set(manifests) - {sid for sid, _ in chain}
    for sid in sorted(orphans):
        report.chain_problems.append(
            f"snapshot {sid[:12]} is not on the main chain; it was not restored"
        )
    for sid, m in chain:
        report.snapshots.append(
            {
                "id": sid,
                "seq": m.seq,
                "created": m.created,
                "files": sum(1 for e in m.entries if e.type == "file"),
                "bytes": m.total_size,
            }
        )
    return [m for _, m in chain]


def merged_entries(chain: list[Manifest]) -> tuple[list[tuple[Entry, Manifest]], str | None]:
    """The case's current tree: each snapshot replaces the top-level folders it deposited."""
    tree: dict[str, tuple[Entry, Manifest]] = {}
    instructions = None
    for m in chain:
        roots = set(m.roots)
        tree = {p: v for p, v in tree.items() if p.split("/", 1)[0] not in roots}
        for e in m.entries:
            tree[e.path] = (e, m)
        if m.instructions is not None:
            instructions = m.instructions
    # A later snapshot may have turned a file into a folder; the manifest checks cover one
    # snapshot, so check the merged tree again.
    kinds = {p: e.type for p, (e, _) in tree.items()}
    for p in kinds:
        parent = p.rpartition("/")[0]
        while parent:
            if kinds.get(parent) == "file":
                raise UnsafePathError(N_("merged tree puts %(path)r under a file"), path=p[:80])
            parent = parent.rpartition("/")[0]
    return [tree[p] for p in sorted(tree)], instructions


# --- writing -----------------------------------------------------------------------------------


def _safe_target(out: Path, rel: str) -> Path:
    """`out/rel`, refusing any existing component that is not a plain directory."""
    cur = out
    parts = rel.split("/")
    for part in parts[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(
                N_("refusing to write through %(path)s: it is not a plain folder"), path=cur
            )
    target = cur / parts[-1]
    if not str(target.resolve(strict=False)).startswith(str(out.resolve()) + os.sep):
        raise UnsafePathError(
            N_("refusing to write %(path)r: it would land outside the output folder"), path=rel[:80]
        )
    return target


def _mkdirs(out: Path, rel: str) -> None:
    cur = out
    for part in rel.split("/"):
        cur = cur / part
        try:
            os.mkdir(cur, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(cur).st_mode):
                raise UnsafePathError(
                    N_("refusing to write through %(path)s: it is not a plain folder"), path=cur
                ) from None


def restore(
    policy: Policy,
    secret_identities: list[str],
    store_urls: list[str],
    out: Path,
    *,
    snapshot: str | None = None,
    force: bool = False,
    s3_endpoint: str | None = None,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    report: Report | None = None,
) -> Report:
    """Write the case's files under `out` and return the report."""
    report = report or Report()
    identities = [x25519.Identity.from_str(s) for s in secret_identities]
    stores = [open_store(u, s3_endpoint=s3_endpoint) for u in store_urls]
    chain = load_chain(policy, identities, stores, report)
    if snapshot:
        picked = [
            m for m, s in zip(chain, report.snapshots, strict=True) if s["id"].startswith(snapshot)
        ]
        if len(picked) != 1:
            raise NotFoundError(
                N_("no single snapshot starts with %(snapshot)r"),
                hint=N_("see the snapshot list"),
                snapshot=snapshot,
            )
        chain = picked
    items, report.instructions = merged_entries(chain)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not stat.S_ISDIR(os.lstat(out).st_mode):
        raise UnsafePathError(N_("the output %(out)s is not a plain folder"), out=out)
    out = out.resolve()
    report.out = str(out)
    # Check every target before writing anything, so a refusal leaves nothing half-written.
    targets = []
    need = 0
    for entry, m in items:
        target = _safe_target(out, entry.path)
        if entry.type == "file":
            if os.path.lexists(target) and (
                not force or not stat.S_ISREG(os.lstat(target).st_mode)
            ):
                raise PolicyError(
                    N_("refusing to overwrite %(target)s"),
                    hint=N_("use --force or an empty folder"),
                    target=target,
                )
            need += entry.size
        targets.append((entry, m, target))
    free = shutil.disk_usage(out).free
    if need > free:
        raise StoreError(
            N_("recovery needs %(need)s bytes but only %(free)s are free in %(out)s"),
            hint=N_("free some space, or recover to a disk with more room (--out)"),
            need=need,
            free=free,
            out=out,
        )
    total = need
    jobs = jobs or (default_jobs() if total >= INLINE_BELOW else 1)
    initargs = (store_urls, s3_endpoint, secret_identities)
    with Pool(jobs, init_recover_worker, initargs, cleanup=end_worker) as pool:
        _Writer(policy.case_id, out, report, progress, total).run(pool, targets)
    report.store_problems = sorted(set(report.store_problems))
    return report


SETTLE_FILES = 256
SETTLE_BYTES = 256 * 1024 * 1024
"""Files written are renamed into place in batches of this many files or bytes, after one
syncfs: a file appears under its name only once its bytes are durable (format.md §9), at the cost
of one syncfs per batch rather than one fsync per file (2,000 files: 9 s of 24 in the profile,
docs/benchmarks.md)."""


RUN_MAX = PACK_MAX_CHUNKS
"""Chunk references of one pack gathered into one fetch task, at most (format.md §9.1)."""


class _Writer:
    """Writes every file of a recovery through one pipeline of chunk fetches: the workers never
    wait for the main process at a file boundary (small files were fetched one at a time)."""

    def __init__(
        self,
        case_id: str,
        out: Path,
        report: Report,
        progress: Callable[[int, int], None] | None,
        total: int,
    ) -> None:
        self.case_id, self.out, self.report = case_id, out, report
        self.progress, self.total, self.done = progress, total, 0
        self.order: deque[list[Any]] = deque()
        """[entry, tmp, target, chunks still to come] of each file whose chunks are queued."""
        self.written: list[tuple[Entry, Path, Path]] = []
        self.written_bytes = 0
        self.tmps: set[Path] = set()
        """Temp files made and not yet renamed: removed if the recovery fails."""

    def tasks(self, targets: list[tuple[Entry, Manifest, Path]]) -> Iterator[Any]:
        """One task per chunk object, and one per run of consecutive chunk references into
        the same pack, across file boundaries (format.md §9.1 step 5): the pack is fetched
        once for the run. A run holds at most RUN_MAX references, which bounds how many files
        are opened ahead of the results."""
        out = self.out
        run: tuple[tuple[Any, ...], list[Any]] | None = None  # (task head, members) gathered
        for entry, m, target in targets:
            if entry.type == "dir":
                _mkdirs(out, entry.path)
                self.report.dirs += 1
                continue
            if "/" in entry.path:
                _mkdirs(out, entry.path.rpartition("/")[0])
            tmp = target.with_name(f".{target.name}.velador-tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            self.tmps.add(tmp)
            try:
                os.ftruncate(fd, entry.size)
            finally:
                os.close(fd)
            self.order.append([entry, tmp, target, len(entry.chunks)])
            offset = 0
            for oid, length in entry.chunks:
                where = m.placed.get(oid)
                if where is None:
                    if run is not None:
                        yield (*run[0], tuple(run[1]))
                        run = None
                    packed = oid in m.zstd  # the signed flag, never a guess (format.md §6.4)
                    yield (str(tmp), self.case_id, oid, offset, length, m.chunk_key, packed)
                else:
                    pid, at = where
                    head = ("pack", self.case_id, pid, m.packs[pid], pid in m.zstd, m.chunk_key)
                    if run is not None and (run[0] != head or len(run[1]) >= RUN_MAX):
                        yield (*run[0], tuple(run[1]))
                        run = None
                    if run is None:
                        run = (head, [])
                    run[1].append((str(tmp), offset, oid, at, length))
                offset += length
        if run is not None:
            yield (*run[0], tuple(run[1]))

    def run(self, pool: Pool, targets: list[tuple[Entry, Manifest, Path]]) -> None:
        try:
            # Results come back in task order, each completing `count` chunk references of the
            # oldest files with chunks to come (a pack run may finish several files).
            for length, count, problems in pool.imap(fetch_chunk, self.tasks(targets)):
                self.report.store_problems.extend(problems)
                while count:
                    self._finish_ready()
                    step = min(count, self.order[0][3])
                    self.order[0][3] -= step
                    count -= step
                self.done += length
                if self.progress:
                    self.progress(self.done, self.total)
                self._finish_ready()
            self._finish_ready()
            self._settle()
            sync_filesystem(self.out)  # the last renames
        except BaseException:
            for tmp in self.tmps:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
            raise
        finally:
            forget_pack()  # an inline run keeps the last pack in this thread

    def _finish_ready(self) -> None:
        while self.order and self.order[0][3] == 0:
            entry, tmp, target, _ = self.order.popleft()
            self.written.append((entry, tmp, target))
            self.written_bytes += entry.size
            if len(self.written) >= SETTLE_FILES or self.written_bytes >= SETTLE_BYTES:
                self._settle()

    def _settle(self) -> None:
        """Make the written files durable (one syncfs), then give them their names."""
        if not self.written:
            return
        release_file()  # inline runs keep the last file open between chunks
        sync_filesystem(self.out)
        for entry, tmp, target in self.written:
            os.chmod(tmp, entry.mode & 0o777 or 0o600)
            os.replace(tmp, target)
            self.tmps.discard(tmp)
            os.utime(target, (entry.mtime, entry.mtime), follow_symlinks=False)
            self.report.files += 1
            self.report.bytes += entry.size
        self.written, self.written_bytes = [], 0


def export_key(secrets: bytes | list[bytes], path: Path, now_iso: str) -> None:
    """Write the age identities like age-keygen does, 0600, refusing to overwrite.

    A rotated case has one key per policy (newest first); age reads an identity file with
    several keys and tries each, so `age -d -i FILE` opens deposits from before a rotation too.
    """
    lines = [f"# created: {now_iso}"]
    for secret in [secrets] if isinstance(secrets, bytes) else secrets:
        ident = age_identity_str(secret)
        pub = str(x25519.Identity.from_str(ident).to_public())
        lines += [f"# public key: {pub}", ident]
    text = "\n".join(lines) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise PolicyError(
            N_("%(path)s already exists"), hint=N_("choose a new file name for the key"), path=path
        ) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
