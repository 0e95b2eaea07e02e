"""Recovery reads chunks stored in packs (docs/format.md §6.3 "Packs", §9.1 step 5).

The cases are built here, without a deposit: pack objects encrypted to the case's release
recipient and version 3 snapshots signed with the reporter's key (tests/fuzz/world.py), in real
folder stores. What must hold: every file comes back byte-identical; a pack is fetched once for a
run of consecutive chunk references in it (store reads are counted on the real FileStore); a
damaged, substituted or wrong-length copy in one store falls back to the next, and with no good
copy the error names the pack; and no chunk whose pack id or chunk id did not verify is ever
written.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import zstandard

from tests.fuzz.world import AGE_IDENTITY_STR, CASE_ID, CHUNK_KEY, T0, world
from vault import objects as O
from vault import recover as R
from vault.errors import StoreError
from vault.manifest import Entry, Manifest, seal_snapshot
from vault.stores import open_store
from vault.stores.local import FileStore

W = world()
MIB = 1024 * 1024


def text(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    words = [b"fuente", b"contrato", b"municipio", b"pago", b"2026", b"notas", b"folio"]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + (b"\n" if rnd.random() < 0.1 else b" ")
    return bytes(out[:n])


class Stores:
    """Real folder stores of one case, and what a test writes into them."""

    def __init__(self, root: Path, n: int = 1) -> None:
        self.urls = [f"file://{root / f's{i}'}" for i in range(n)]
        self.stores = [open_store(u) for u in self.urls]
        self.root = root

    def put(self, oid: str, payload: bytes, only: int | None = None) -> None:
        blob = O.encrypt(payload, W.policy.release_recipient)
        for i, store in enumerate(self.stores):
            if only is None or i == only:
                store.put(O.object_key(CASE_ID, oid), blob)

    def snapshot(self, m: Manifest) -> None:
        sid, blob = seal_snapshot(m, W.reporter.sign, W.policy.release_recipient)
        for store in self.stores:
            store.put(f"{CASE_ID}/snapshots/{sid}", blob)

    def restore(self, out: str = "out", **kw) -> R.Report:
        return R.restore(W.policy, [AGE_IDENTITY_STR], self.urls, self.root / out, **kw)


def pack_of(files: list[bytes]) -> tuple[bytes, str, dict[str, int]]:
    """The plaintext and id of a pack of these chunks (each stored once), and their offsets."""
    offsets: dict[str, int] = {}
    plain = bytearray()
    for data in files:
        oid = O.object_id(CHUNK_KEY, data)
        if oid not in offsets:
            offsets[oid] = len(plain)
            plain += data
    return bytes(plain), O.object_id(CHUNK_KEY, bytes(plain)), offsets


def manifest(entries: list[Entry], **kw) -> Manifest:
    return Manifest(
        case_id=CASE_ID,
        policy_hash=W.policy.hash,
        seq=1,
        created=T0,
        parent=None,
        label="caso",
        chunk_key=CHUNK_KEY,
        chunker_seed=42,
        entries=(Entry("inv", "dir", 0o755, T0), *entries),
        roots=("inv",),
        **kw,
    )


def small(path: str, data: bytes) -> Entry:
    chunks = ((O.object_id(CHUNK_KEY, data), len(data)),) if data else ()
    return Entry(path, "file", 0o640, T0 + len(data), len(data), chunks)


@pytest.fixture
def gets(monkeypatch) -> list[str]:
    """The keys every FileStore (the workers' own included) is asked for."""
    seen: list[str] = []
    real = FileStore.get

    def counting(self, key: str, max_bytes: int | None = None) -> bytes:
        seen.append(key)
        return real(self, key, max_bytes)

    monkeypatch.setattr(FileStore, "get", counting)
    return seen


def build_tree(s: Stores) -> tuple[dict[str, bytes], str, str]:
    """inv/a: 30 small files in pack A (zstd) with a 2.5 MiB file of three chunk objects in the
    middle of them, an empty file and two equal files; inv/b: 25 small files in pack B (plain).
    Returns the expected tree and the two pack ids."""
    rnd = random.Random(7)
    a_files = {f"inv/a/f{i:02d}.txt": text(rnd.randrange(1, 6000), i) for i in range(15)}
    a_files |= {f"inv/a/p{i:02d}.txt": text(rnd.randrange(1, 6000), 100 + i) for i in range(15)}
    a_files["inv/a/p03.txt"] = a_files["inv/a/f02.txt"]  # equal files: one chunk, one place
    a_files["inv/a/f07.txt"] = b""  # an empty file inside the run
    b_files = {f"inv/b/g{i:02d}.bin": os.urandom(rnd.randrange(1, 9000)) for i in range(25)}
    big = os.urandom(MIB) + text(MIB, 5) + os.urandom(MIB // 2)
    big_chunks = [big[:MIB], big[MIB : 2 * MIB], big[2 * MIB :]]
    a_plain, a_pid, a_off = pack_of([d for d in a_files.values() if d])
    b_plain, b_pid, b_off = pack_of(list(b_files.values()))
    s.put(a_pid, zstandard.ZstdCompressor(level=1).compress(a_plain))
    s.put(b_pid, b_plain)
    zstd = {a_pid}
    for i, chunk in enumerate(big_chunks):
        oid = O.object_id(CHUNK_KEY, chunk)
        if i == 1:
            zstd.add(oid)
            s.put(oid, zstandard.ZstdCompressor(level=1).compress(chunk))
        else:
            s.put(oid, chunk)
    big_entry = Entry(
        "inv/a/m.bin",  # sorted between f14 and p00: it interrupts the run of pack A
        "file",
        0o600,
        T0,
        len(big),
        tuple((O.object_id(CHUNK_KEY, c), len(c)) for c in big_chunks),
    )
    entries = [small(p, d) for p, d in {**a_files, **b_files}.items()] + [big_entry]
    entries += [Entry("inv/a", "dir", 0o755, T0), Entry("inv/b", "dir", 0o755, T0)]
    placed = {oid: (a_pid, off) for oid, off in a_off.items()}
    placed |= {oid: (b_pid, off) for oid, off in b_off.items()}
    m = manifest(
        sorted(entries, key=lambda e: e.path),
        zstd=frozenset(zstd),
        packs={a_pid: len(a_plain), b_pid: len(b_plain)},
        placed=placed,
    )
    assert m.version == 3
    s.snapshot(m)
    return {**a_files, **b_files, "inv/a/m.bin": big}, a_pid, b_pid


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("jobs", [1, 2])
def test_small_files_in_packs_come_back_whole_each_pack_fetched_once_per_run(tmp_path, gets, jobs):
    # Given 55 small files in two packs, with a large file of three chunk objects in between
    s = Stores(tmp_path)
    expected, a_pid, b_pid = build_tree(s)
    # When the case is recovered
    report = s.restore(jobs=jobs)
    # Then every file is byte-identical, with its mode and time
    assert tree(tmp_path / "out") == expected
    assert report.files == len(expected) and report.bytes == sum(map(len, expected.values()))
    assert (tmp_path / "out/inv/a/f00.txt").stat().st_mode & 0o777 == 0o640
    assert report.store_problems == []
    # and each pack is read once per run of references to it: pack B once; pack A, whose run
    # the large file cuts in two, once inline (the worker keeps the last pack) and at most
    # twice with two workers; never once per small file
    objects = [k for k in gets if "/objects/" in k]
    assert objects.count(O.object_key(CASE_ID, b_pid)) == 1
    assert objects.count(O.object_key(CASE_ID, a_pid)) in ((1,) if jobs == 1 else (1, 2))
    assert len(objects) - objects.count(O.object_key(CASE_ID, a_pid)) == 1 + 3  # B, big file


def hostile_copy(plain: bytes, how: str) -> bytes:
    """An object a hostile or broken store could hold under the key of a plain pack."""
    payload = {
        "damaged": plain,  # cut short below: it no longer decrypts
        "other-concatenation": plain[len(plain) // 2 :] + plain[: len(plain) // 2],
        "too-long": plain + b"x",
        "too-short": plain[:-1],
    }[how]
    blob = O.encrypt(payload, W.policy.release_recipient)
    return blob[: len(blob) - 100] if how == "damaged" else blob


@pytest.mark.parametrize("how", ["damaged", "other-concatenation", "too-long", "too-short"])
def test_a_bad_pack_copy_falls_back_to_the_next_store_and_fails_naming_it(tmp_path, how):
    # Given two stores, the first holding a bad copy of the pack of three small files
    s = Stores(tmp_path, 2)
    files = {f"inv/n{i}.txt": text(2000 + i, i) for i in range(3)}
    plain, pid, offsets = pack_of(list(files.values()))
    s.put(pid, plain, only=1)
    key = O.object_key(CASE_ID, pid)
    s.stores[0].put(key, hostile_copy(plain, how))
    m = manifest(
        [small(p, d) for p, d in files.items()],
        packs={pid: len(plain)},
        placed={oid: (pid, off) for oid, off in offsets.items()},
    )
    s.snapshot(m)
    # When it is recovered, then the second store's copy is used and the first one reported
    report = s.restore()
    assert tree(tmp_path / "out") == files
    assert any(p.startswith(s.urls[0]) and f"pack {pid[:12]}" in p for p in report.store_problems)
    # And with the bad copy in both stores, recovery fails naming the pack, writing nothing
    s.stores[1].put(key, s.stores[0].get(key))
    with pytest.raises(StoreError, match=f"pack {pid[:12]}") as info:
        s.restore("out2")
    assert "missing or damaged in every store" in info.value.message
    assert tree(tmp_path / "out2") == {}


def test_chunks_pointing_at_the_wrong_slice_are_refused_and_never_written(tmp_path):
    # Given a good pack of two chunks of equal length and a manifest that swaps their offsets
    s = Stores(tmp_path)
    one, two = text(3000, 1), text(3000, 2)
    plain, pid, offsets = pack_of([one, two])
    s.put(pid, plain)
    oid1, oid2 = (O.object_id(CHUNK_KEY, d) for d in (one, two))
    assert offsets == {oid1: 0, oid2: 3000}
    m = manifest(
        [small("inv/uno.txt", one), small("inv/dos.txt", two)],
        packs={pid: len(plain)},
        placed={oid1: (pid, 3000), oid2: (pid, 0)},
    )
    s.snapshot(m)
    # When it is recovered, then the chunk ids do not match and nothing is written
    with pytest.raises(StoreError, match=f"pack {pid[:12]}") as info:
        s.restore()
    assert "does not match its id" in info.value.hint
    assert tree(tmp_path / "out") == {}
    # And a worker handed such a run directly writes none of it, not even the chunk that is
    # in its place (every chunk is checked before any is written)
    target = tmp_path / "target"
    target.write_bytes(b"\xee" * 6000)
    O.init_recover_worker(s.urls, None, [AGE_IDENTITY_STR])
    try:
        members = ((str(target), 0, oid1, 0, 3000), (str(target), 3000, oid2, 0, 3000))
        with pytest.raises(StoreError, match=f"pack {pid[:12]}"):
            O.fetch_chunk(("pack", CASE_ID, pid, len(plain), False, CHUNK_KEY, members))
    finally:
        O.release_file()
        O.end_worker()
    assert target.read_bytes() == b"\xee" * 6000


def test_a_compression_bomb_in_a_pack_is_refused(tmp_path):
    # Given a pack marked zstd whose stored frame holds 64 MiB of zeros, its declared content
    # size rewritten to the pack's length
    s = Stores(tmp_path)
    files = {f"inv/n{i}.txt": text(2000, i) for i in range(3)}
    plain, pid, offsets = pack_of(list(files.values()))
    cobj = zstandard.ZstdCompressor(level=1).compressobj(size=64 * MIB)
    bomb = b"".join(cobj.compress(bytes(MIB)) for _ in range(64)) + cobj.flush()
    assert bomb[4] >> 6 == 2 and not bomb[4] & 0x20  # a 4-byte size after one window byte
    lying = bomb[:6] + len(plain).to_bytes(4, "little") + bomb[10:]
    assert zstandard.frame_content_size(lying) == len(plain)
    s.put(pid, lying)
    m = manifest(
        [small(p, d) for p, d in files.items()],
        zstd=frozenset({pid}),
        packs={pid: len(plain)},
        placed={oid: (pid, off) for oid, off in offsets.items()},
    )
    s.snapshot(m)
    # When it is recovered, then the frame is refused as the wrong length, and nothing written
    with pytest.raises(StoreError, match=f"pack {pid[:12]}") as info:
        s.restore()
    assert "wrong length" in info.value.hint
    assert tree(tmp_path / "out") == {}
