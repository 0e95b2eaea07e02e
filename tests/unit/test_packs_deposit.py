"""Deposits store small files in packs (docs/format.md §6.3 "Packs", §6.4 version 3, §6.6).

What a reporter relies on: thousands of notes become a few objects (fewer requests over a slow
uplink, less for a store to learn from sizes), a deposit cut off after a pack reached the stores
does not send it again, an edit to one note stores that note alone, and a pack the stores lost
is stored anew by the next deposit. Reading packs back is tested in the recovery tests.
"""

from __future__ import annotations

import itertools
import os
import random

import pytest

from vault import deposit as D
from vault import verify as V
from vault.clock import FakeClock
from vault.constants import PACK_BELOW, PACK_MAX, PACK_MAX_CHUNKS
from vault.objects import object_id, object_key
from vault.stores import open_store

from .test_compression import chain, make_case, text

KIB = 1024


@pytest.fixture
def setup(tmp_path):
    return make_case(tmp_path)


def notes(src, n: int, seed: int = 1) -> dict[str, bytes]:
    """`n` small files of 1 to 200 KiB, text and random bytes mixed, as a reporter's notes."""
    rnd = random.Random(seed)
    files = {}
    for i in range(n):
        size = rnd.randint(1 * KIB, 200 * KIB)
        data = text(size, seed * 1000 + i) if i % 3 else rnd.randbytes(size)
        files[f"notas/{i:04d}.txt"] = data
    src.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (src.parent / rel).write_bytes(data)
    return files


def stored_objects(setup) -> dict[str, int]:
    store = open_store(setup.policy.stores[0])
    prefix = f"{setup.policy.case_id}/objects/"
    return dict(store.list_sizes(prefix))


def test_small_files_share_few_packs(setup):
    # Given 120 small notes (about 12 MiB) and one large file of several chunks
    src = setup.tmp / "notas"
    files = notes(src, 120)
    video = os.urandom(12 * 1024 * 1024)
    (src / "video.bin").write_bytes(video)
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
    (m,) = chain(setup)
    # Then the notes are in packs of notes only, each at most PACK_MAX bytes
    assert m.version == 3
    small = {
        oid for e in m.entries if e.type == "file" and e.size < PACK_BELOW for oid, _ in e.chunks
    }
    assert len(small) == 120 and small <= set(m.placed)
    note_packs = {m.placed[oid][0] for oid in small}
    assert sum(m.packs[p] for p in note_packs) == sum(len(d) for d in files.values())
    assert all(n <= PACK_MAX for n in m.packs.values())
    # and the large file's consecutive chunks are in packs of their own, in file order
    big = next(e for e in m.entries if e.path.endswith("video.bin"))
    assert len(big.chunks) >= 6
    big_packs = [m.placed.get(oid, (oid, 0))[0] for oid, _ in big.chunks]
    assert not set(big_packs) & note_packs
    assert big_packs == sorted(big_packs, key=big_packs.index)  # each pack's chunks together
    # and a store holds a handful of objects instead of one per note or chunk
    objs = stored_objects(setup)
    assert len(objs) == len(set(big_packs) | note_packs) < len(big.chunks) + 12
    assert res.new_chunks == 120 + len(big.chunks)
    # and each pack's id is the keyed hash of its members in order (format.md §6.3)
    by_oid = files_by_oid(m, files)
    at = 0
    for oid, n in big.chunks:
        by_oid[oid] = video[at : at + n]
        at += n
    for pid in m.packs:
        members = sorted((off, oid) for oid, (p, off) in m.placed.items() if p == pid)
        plain = b"".join(by_oid[oid] for _, oid in members)
        assert len(plain) == m.packs[pid] and object_id(m.chunk_key, plain) == pid
        assert [off for off, _ in members] == list(
            itertools.accumulate([0] + [len(by_oid[o]) for _, o in members[:-1]])
        )


def files_by_oid(m, files: dict[str, bytes]) -> dict[str, bytes]:
    return {object_id(m.chunk_key, data): data for data in files.values() if data}


def test_a_pack_holds_at_most_the_chunk_limit(setup, monkeypatch):
    # Given more tiny files than a pack may hold
    monkeypatch.setattr(D, "PACK_MAX_CHUNKS", 50)
    src = setup.tmp / "notas"
    src.mkdir()
    for i in range(120):
        (src / f"{i:03d}.txt").write_bytes(f"nota {i}\n".encode() * 3)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    (m,) = chain(setup)
    counts: dict[str, int] = {}
    for pid, _ in m.placed.values():
        counts[pid] = counts.get(pid, 0) + 1
    # Then the files are cut into groups of 50, 50 and 20
    assert sorted(counts.values()) == [20, 50, 50]
    assert PACK_MAX_CHUNKS > 50  # the limit of this release, lowered for the test


def test_a_cut_off_deposit_finds_its_packs_and_sends_nothing_again(setup):
    # Given a deposit whose packs reached every store but whose index forgot them (cut off
    # after the uploads, before recording: the stores hold packs no snapshot names yet)
    src = setup.tmp / "notas"
    notes(src, 60)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
    before = stored_objects(setup)
    with setup.st.tx():
        for table in ("objects", "packed", "filecache"):
            setup.st.db.execute(f"DELETE FROM {table}")
    # When it runs again over the same files
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
    # Then it makes the same packs, finds them stored, and uploads no object again
    assert res.unchanged and res.bytes_uploaded == 0
    assert stored_objects(setup) == before
    (m,) = chain(setup)
    assert all(setup.st.known_object(setup.policy.case_id, oid) for oid in m.placed)


def test_an_edit_to_one_note_stores_that_note_alone(setup):
    src = setup.tmp / "notas"
    files = notes(src, 40)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
    before = stored_objects(setup)
    # When one note changes by one byte
    path = src / "0007.txt"
    data = bytearray(files["notas/0007.txt"])
    data[10] ^= 1
    path.write_bytes(bytes(data))
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
    # Then one new object holds it (a pack of one is a plain chunk object), the others stay
    added = set(stored_objects(setup)) - set(before)
    assert res.new_chunks == 1 and len(added) == 1
    _, m2 = chain(setup)
    entry = next(e for e in m2.entries if e.path == "notas/0007.txt")
    ((oid, _),) = entry.chunks
    assert oid not in m2.placed and object_key(setup.policy.case_id, oid).endswith(added.pop())
    # and every other note is still named in its old pack
    assert len(m2.placed) == 39


def test_a_lost_pack_is_made_again_by_the_next_deposit(setup):
    src = setup.tmp / "notas"
    notes(src, 30)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    (m1,) = chain(setup)
    lost = sorted(m1.packs)[0]
    key = object_key(setup.policy.case_id, lost)
    for url in setup.policy.stores:  # every copy of one pack is gone
        open_store(url).delete(key)
    # When verify notices and the reporter deposits the same files again
    report = V.verify_case(setup.st, setup.st.case("caso"))
    assert not report.ok
    orphans = [oid for oid, (p, _) in m1.placed.items() if p == lost]
    assert not any(setup.st.known_object(setup.policy.case_id, o) for o in orphans)
    with setup.st.tx():
        setup.st.db.execute("DELETE FROM filecache")
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    # Then the same files group the same way: the pack is made again under its name, in its
    # form, so the snapshot that named it is whole again (format.md §6.3 "Packs")
    assert res.unchanged and res.new_chunks == len(orphans)
    assert all(open_store(url).has(key) for url in setup.policy.stores)
    assert V.verify_case(setup.st, setup.st.case("caso")).ok


def test_a_lost_pack_of_changed_files_is_stored_in_a_new_pack(setup):
    src = setup.tmp / "notas"
    files = notes(src, 30)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    (m1,) = chain(setup)
    lost = sorted(m1.packs)[0]
    for url in setup.policy.stores:
        open_store(url).delete(object_key(setup.policy.case_id, lost))
    V.verify_case(setup.st, setup.st.case("caso"))
    # When a note of that pack is gone from the folder by the time of the next deposit
    orphans = {oid for oid, (p, _) in m1.placed.items() if p == lost}
    by_oid = files_by_oid(m1, files)
    victim = next(rel for rel, data in files.items() if object_id(m1.chunk_key, data) in orphans)
    (setup.tmp / victim).unlink()
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    # Then the other notes it held are in a new pack every store holds
    _, m2 = chain(setup)
    assert lost not in m2.packs
    rest = orphans - {object_id(m1.chunk_key, files[victim])}
    assert rest and rest <= set(m2.placed) and all(by_oid[o] for o in rest)
    for url in setup.policy.stores:
        for pid in m2.packs:
            assert open_store(url).has(object_key(setup.policy.case_id, pid))


def test_an_unchanged_redeposit_of_packed_files_reads_nothing(setup):
    src = setup.tmp / "notas"
    notes(src, 50)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    assert res.unchanged and res.cached_files == 50 and res.bytes_read == 0


def test_a_one_byte_edit_of_a_large_file_uploads_about_one_chunk(setup):
    # Given a large file whose chunks went into packs of consecutive chunks
    src = setup.tmp / "notas"
    src.mkdir()
    video = bytearray(os.urandom(16 * 1024 * 1024))
    (src / "video.bin").write_bytes(video)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
    (m1,) = chain(setup)
    assert len(set(m1.placed.values())) > 1 and m1.packs
    before = stored_objects(setup)
    # When one byte in the middle changes
    video[8 * 1024 * 1024] ^= 0xFF
    (src / "video.bin").write_bytes(video)
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
    # Then only the chunk(s) around it are new, stored as one object of about one chunk
    added = set(stored_objects(setup)) - set(before)
    assert 1 <= res.new_chunks <= 2 and len(added) == 1
    assert res.bytes_uploaded < 2 * (2 * 4 * 1024 * 1024) + 2 * 1024 * 1024  # two stores
