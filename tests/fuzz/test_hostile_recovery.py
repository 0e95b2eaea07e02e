"""Recovery against hostile, validly signed material, end to end (docs/format.md §6.4, §6.5, §9).

tests/unit/test_manifest.py already restores snapshots with `..`, absolute paths, a symlink entry
and symlinks planted in the output folder. This file adds what it does not cover: duplicate
paths (exact and after case folding) through `restore`, huge declared sizes (refused before a
byte is written, without allocating them), a size that lies about its chunks, loops in the
snapshot chain (a snapshot that names itself as parent, two that name each other), and forks and
gaps that mark the chain broken. Every refusal must name the reason and leave nothing behind:
the output folder and its surroundings are compared before and after.

The snapshots are signed with the reporter's real key and encrypted to the case's release
recipient (tests/fuzz/world.py), so every check behind the signature runs.
"""

from __future__ import annotations

import os
import shutil
import tracemalloc
from pathlib import Path

import pytest

from tests.fuzz.world import AGE_IDENTITY_STR, CASE_ID, CHUNK_KEY, DATA, world
from vault import manifest as M
from vault.constants import CHUNK_MAX
from vault.encoding import canonical_json
from vault.errors import FormatError, StoreError, UnsafePathError
from vault.objects import encrypt, object_id, object_key, snapshot_key
from vault.recover import Report, restore
from vault.signing import sign_document
from vault.stores import open_store

W = world()
OID = object_id(CHUNK_KEY, DATA)


def tree(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


class Case:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root / 'store'}"
        self.store = open_store(self.url)
        self.store.put(object_key(CASE_ID, OID), encrypt(DATA, W.policy.release_recipient))
        self.out = root / "work" / "out"

    def body(self, entries: list[dict], **over) -> dict:
        body = W.manifest_body()
        body.update(seq=1, parent=None, roots=["inv"], entries=entries)
        body.update(over)
        return body

    def put(self, body: dict, sid: str | None = None) -> str:
        """Sign, encrypt and store a snapshot; `sid` forces its store key (see fake_ids)."""
        plain = canonical_json(sign_document("snapshot", body, W.reporter.sign))
        ct = encrypt(plain, W.policy.release_recipient)
        sid = sid or M.snapshot_id(ct)
        self.store.put(snapshot_key(CASE_ID, sid), ct)
        return sid

    def restore(self, **kw) -> Report:
        return restore(W.policy, [AGE_IDENTITY_STR], [self.url], self.out, **kw)


def file_entry(path: str, size: int = len(DATA), chunks=None) -> dict:
    return {
        "path": path,
        "type": "file",
        "mode": 0o644,
        "mtime": 1,
        "size": size,
        "chunks": [[OID, len(DATA)]] if chunks is None else chunks,
    }


def dir_entry(path: str) -> dict:
    return {"path": path, "type": "dir", "mode": 0o755, "mtime": 1}


@pytest.fixture
def case(tmp_path: Path) -> Case:
    return Case(tmp_path)


def assert_nothing_written(case: Case, before: list[str]) -> None:
    # The (empty) output folder may have been made: format.md §9.3 creates it first.
    made = {"work", "work/out"}
    assert [p for p in tree(case.root) if p not in made] == [p for p in before if p not in made]
    assert not case.out.exists() or tree(case.out) == []


def test_a_sane_snapshot_restores(case):
    case.put(case.body([dir_entry("inv"), file_entry("inv/a.txt")]))
    report = case.restore()
    assert (case.out / "inv" / "a.txt").read_bytes() == DATA
    assert report.chain_intact and report.files == 1


@pytest.mark.parametrize(
    "paths",
    [
        ["inv/a.txt", "inv/a.txt"],
        ["inv/Notas.txt", "inv/NOTAS.TXT"],
        ["inv/straße", "inv/STRASSE"],
        ["inv/é", "inv/É"],
    ],
    ids=["exact", "case", "casefold-sharp-s", "accented-case"],
)
def test_duplicate_paths_are_refused_before_writing(case, paths):
    # Given a signed snapshot naming one path twice (exactly, or after Unicode case folding)
    sid = case.put(case.body([dir_entry("inv"), *(file_entry(p) for p in paths)]))
    before = tree(case.root)
    # When it is restored, then recovery refuses with the reason and writes nothing
    with pytest.raises(UnsafePathError, match=rf"snapshot 1 \({sid[:12]}\) .*twice; refusing"):
        case.restore()
    assert_nothing_written(case, before)


def test_huge_declared_size_is_refused_before_writing(case):
    # Given a signed snapshot whose one file declares more bytes than the disk has free (its
    # chunks add up, all naming the same small object)
    free = shutil.disk_usage(case.root).free
    n = free // CHUNK_MAX + 256  # 1 GiB of margin for other programs freeing space meanwhile
    if n > 200_000:  # pragma: no cover - a machine with more than ~800 GB free
        pytest.skip("too much free space to exceed with a small manifest")
    case.put(
        case.body(
            [dir_entry("inv"), file_entry("inv/huge.bin", n * CHUNK_MAX, [[OID, CHUNK_MAX]] * n)]
        )
    )
    before = tree(case.root)
    # When it is restored, then the free-space check refuses it before anything is created, and
    # reading it costs memory for the manifest only, not for the declared size
    tracemalloc.start()
    try:
        with pytest.raises(StoreError, match=r"recovery needs \d+ bytes but only \d+ are free"):
            case.restore()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * n * 100 + 50 * 1024 * 1024
    assert_nothing_written(case, before)


def test_a_size_that_lies_about_its_chunks_leaves_no_file(case):
    # Given a file that declares 8 chunks of 4 MiB where the store holds a 39-byte object
    case.put(
        case.body(
            [dir_entry("inv"), file_entry("inv/lie.bin", 8 * CHUNK_MAX, [[OID, CHUNK_MAX]] * 8)]
        )
    )
    # When it is restored, then no copy has the declared length and no file (nor temp file) stays
    with pytest.raises(StoreError, match="missing or damaged in every store"):
        case.restore()
    assert not (case.out / "inv" / "lie.bin").exists()
    assert [p for p in tree(case.out) if "velador-tmp" in p] == []
    assert all(not (case.root / p).is_file() or "store" in p for p in tree(case.root))


@pytest.fixture
def fake_ids(monkeypatch):
    """Let a test choose snapshot ids: `M.snapshot_id` answers from a table for the ciphertexts
    the test registers. This stands for a broken hash or a store that lies about names; with the
    real BLAKE2b a manifest cannot name its own id, so only this way can loops be built."""
    table: dict[bytes, str] = {}
    real = M.snapshot_id
    monkeypatch.setattr(M, "snapshot_id", lambda ct: table.get(bytes(ct)) or real(ct))
    return table


def _put_with_id(case: Case, table: dict[bytes, str], body: dict, sid: str) -> None:
    plain = canonical_json(sign_document("snapshot", body, W.reporter.sign))
    ct = encrypt(plain, W.policy.release_recipient)
    table[ct] = sid
    case.store.put(snapshot_key(CASE_ID, sid), ct)


def test_snapshot_naming_itself_as_parent_is_refused(case, fake_ids):
    # Given snapshot 2 whose parent is its own id
    a, b = "a1" * 32, "b2" * 32
    _put_with_id(case, fake_ids, case.body([dir_entry("inv")]), a)
    _put_with_id(case, fake_ids, case.body([dir_entry("inv")], seq=2, parent=b), b)
    before = tree(case.root)
    # Then the walk stops with a clear error and writes nothing
    with pytest.raises(FormatError, match="the snapshot chain loops back on itself"):
        case.restore()
    assert_nothing_written(case, before)


def test_two_snapshots_naming_each_other_are_refused(case, fake_ids):
    # Given snapshot 3 -> 2 -> 3 (a loop that never reaches snapshot 1)
    a, b, c = "a1" * 32, "b2" * 32, "c3" * 32
    _put_with_id(case, fake_ids, case.body([dir_entry("inv")]), a)
    _put_with_id(case, fake_ids, case.body([dir_entry("inv")], seq=2, parent=c), b)
    _put_with_id(case, fake_ids, case.body([dir_entry("inv")], seq=3, parent=b), c)
    before = tree(case.root)
    with pytest.raises(FormatError, match="loops back on itself"):
        case.restore()
    assert_nothing_written(case, before)


def test_fork_and_gap_mark_the_chain_broken(case):
    # Given a fork (two snapshots claim number 2) and a head that names a missing parent
    s1 = case.put(case.body([dir_entry("inv"), file_entry("inv/a.txt")]))
    case.put(case.body([dir_entry("inv")], seq=2, parent=s1, label="one"))
    case.put(case.body([dir_entry("inv")], seq=2, parent=s1, label="two"))
    case.put(case.body([dir_entry("inv")], seq=9, parent="9f" * 32), sid=None)
    # When it is restored, then recovery reports the chain broken instead of guessing silently
    report = case.restore()
    assert not report.chain_intact
    assert any("missing from every store" in p for p in report.chain_problems)
    assert any("not on the main chain" in p for p in report.chain_problems)
    # and writes only inside the output folder
    assert all(p.startswith(("store", "work")) for p in tree(case.root))


def test_an_oversized_stored_object_is_refused_without_reading_it(case):
    from vault.objects import fetch_chunk, init_recover_worker, release_file

    # Given a store whose copy of a chunk is 48 MiB of garbage
    path = case.root / "store" / object_key(CASE_ID, OID)
    path.write_bytes(b"\0" * (48 * 1024 * 1024))
    tmp = case.root / "chunk.tmp"
    tmp.write_bytes(b"")
    init_recover_worker([case.url], None, [AGE_IDENTITY_STR])
    # When a recovery worker fetches it, then it is refused without being read whole
    tracemalloc.start()
    try:
        with pytest.raises(StoreError):
            fetch_chunk((str(tmp), CASE_ID, OID, 0, len(DATA), CHUNK_KEY))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        release_file()
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"
