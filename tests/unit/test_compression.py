"""Chunks compressed with zstd before encryption (docs/format.md §6.3, §6.4, manifest version 2).

The flag lives in the signed manifest and is never guessed from the bytes; object ids stay keyed
hashes of the uncompressed chunk; a reader never produces more than the manifest's length.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import zstandard
from pyrage import x25519

from vault import case as C
from vault import deposit as D
from vault import envelope as E
from vault import identity, shares
from vault import objects as O
from vault import recover as R
from vault import state as S
from vault import verify as V
from vault.clock import FakeClock
from vault.errors import StoreError
from vault.stores import open_store

MIB = 1024 * 1024


@pytest.fixture
def setup(tmp_path: Path):
    return make_case(tmp_path)


def make_case(tmp_path: Path):
    """A reporter's case over two folder stores, and the recovered age key of an outlet."""
    rep = identity.create_identity(tmp_path / "r", "Ana", "reporter", "pw", 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", "pw", 1)
    st = S.LocalState(tmp_path / "r")
    stores = [f"file://{tmp_path}/s1", f"file://{tmp_path}/s2"]
    nc = C.create_case(
        st,
        rep,
        "caso",
        [out.card],
        shares.ShareSpec(1, ((2, 3),)),
        stores,
        FakeClock(),
        offline_dir=tmp_path / "usb",
    )
    C.register_locally(st, rep, "caso", nc, {})
    ms = [
        E.open_envelope(envs[0], nc.policy, out.box_key).mnemonic for envs in nc.envelopes.values()
    ]
    secret = R.recover_key(nc.policy, ms[:2], R.Report())
    ns = type("Setup", (), {})()
    ns.tmp, ns.rep, ns.st, ns.policy = tmp_path, rep, st, nc.policy
    ns.key = shares.age_identity_str(secret)
    return ns


def text(n: int, seed: int = 1) -> bytes:
    """CSV-like text that zstd shrinks to about a third."""
    rnd = random.Random(seed)
    words = [
        "acuerdo",
        "contrato",
        "municipio",
        "pago",
        "transferencia",
        "empresa",
        "monto",
        "proveedor",
        "obra",
    ]
    lines = []
    size = 0
    while size < n:
        line = f"{rnd.randint(1, 10**6)},{rnd.choice(words)},{rnd.random() * 1e6:.2f}\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()[:n]


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def chain(setup) -> list:
    ids = [x25519.Identity.from_str(setup.key)]
    stores = [open_store(u) for u in setup.policy.stores]
    return R.load_chain(setup.policy, ids, stores, R.Report())


def write_mixed(src: Path) -> dict[str, bytes]:
    zst = zstandard.ZstdCompressor(level=19).compress(text(300_000, 7))
    files = {
        "inv/ledger.csv": text(3 * MIB),  # several chunks, all compressible
        "inv/video.bin": os.urandom(2 * MIB),  # incompressible: stored as is
        "inv/tiny.txt": b"nota breve\n" * 100,  # 1,100 bytes: below the 4 KiB saving
        # A deposited .zst starts with the zstd magic: it must come back as the .zst, untouched.
        "inv/archivo.csv.zst": zst,
        "inv/vacio.txt": b"",
    }
    for rel, data in files.items():
        (src.parent / rel).parent.mkdir(parents=True, exist_ok=True)
        (src.parent / rel).write_bytes(data)
    return files


def zst_of(files: dict[str, bytes]) -> bytes:
    return files["inv/archivo.csv.zst"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_mixed_tree_round_trips_byte_identical(setup, jobs):
    src = setup.tmp / "inv"
    files = write_mixed(src)
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=jobs)
    # Bytes uploaded: the text went in compressed (two stores, random data at full size).
    assert res.bytes_uploaded < 2 * (2 * MIB + 2 * MIB)
    (m,) = chain(setup)
    assert m.version == 3  # the two small files share a pack (format.md §6.3 "Packs")
    # (a chunk's form is its object's: its own, or the pack it is in)
    flags = {
        e.path: [m.placed.get(oid, (oid,))[0] in m.zstd for oid, _ in e.chunks]
        for e in m.entries
        if e.type == "file"
    }
    assert flags["inv/ledger.csv"] and all(flags["inv/ledger.csv"])
    assert not any(flags["inv/video.bin"])
    where = {e.path: [m.placed.get(oid) for oid, _ in e.chunks] for e in m.entries if e.chunks}
    (pack, _), (pack2, _) = where["inv/archivo.csv.zst"][0], where["inv/tiny.txt"][0]
    assert pack == pack2 and m.packs[pack] == len(files["inv/tiny.txt"]) + len(zst_of(files))
    # A pack of 1,100 bytes of text and an incompressible .zst saves under 4 KiB: stored as is
    assert pack not in m.zstd
    # A large file's consecutive chunks are packed apart from the small files
    assert {p for w in where["inv/ledger.csv"] if w for p in w[:1]}.isdisjoint({pack})
    R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / "out", jobs=jobs)
    assert tree(setup.tmp / "out") == files


def test_objects_stored_before_compression_keep_their_form(setup, monkeypatch):
    # Given a deposit made by a writer without compression (version 1 manifests)
    src = setup.tmp / "inv"
    src.mkdir()
    old = text(2 * MIB, 3)
    (src / "old.csv").write_bytes(old)
    monkeypatch.setattr(O, "pack_chunk", lambda data, want=None: (data, False))
    monkeypatch.setattr(D, "PACK_MAX", 0)  # nor packs (version 3)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    monkeypatch.undo()
    (m1,) = chain(setup)
    assert m1.version == 1 and not m1.zstd
    # When the same chunks are deposited again next to a new compressible file
    new = text(2 * MIB, 4)
    (src / "new.csv").write_bytes(new)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    m1, m2 = chain(setup)
    # Then the old chunks stay marked uncompressed, the new ones compressed, and both read back
    entries = {e.path: e for e in m2.entries}
    assert not {oid for oid, _ in entries["inv/old.csv"].chunks} & m2.zstd
    assert {m2.placed.get(oid, (oid,))[0] for oid, _ in entries["inv/new.csv"].chunks} <= m2.zstd
    R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / "out")
    assert tree(setup.tmp / "out") == {"inv/old.csv": old, "inv/new.csv": new}


def test_a_cut_off_run_learns_the_form_from_the_stored_size(setup):
    # Given chunks every store holds but the index forgot (a run cut off before recording them)
    src = setup.tmp / "inv"
    src.mkdir()
    files = {"inv/a.csv": text(2 * MIB, 5), "inv/b.bin": os.urandom(MIB)}
    for rel, data in files.items():
        (setup.tmp / rel).write_bytes(data)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    (first,) = chain(setup)
    with setup.st.tx():
        setup.st.db.execute("DELETE FROM objects")
        setup.st.db.execute("DELETE FROM filecache")
    (src / "c.txt").write_bytes(b"nuevo\n")
    # When the folder is deposited again
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    _, second = chain(setup)
    # Then the flags match the first manifest's and the tree reads back
    assert second.zstd == first.zstd and first.zstd
    R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / "out")
    assert tree(setup.tmp / "out") == {**files, "inv/c.txt": b"nuevo\n"}


def test_unpack_refuses_more_or_less_than_the_manifest_length():
    data = text(300_000)
    frame = zstandard.ZstdCompressor(level=1).compress(data)
    assert O.unpack_chunk(frame, len(data)) == data
    assert O.unpack_chunk(frame, len(data) - 1) is None  # the declared size must be the length
    assert O.unpack_chunk(frame + frame, len(data)) is None  # a second frame: zstd -d reads it
    assert O.unpack_chunk(frame[:-1], len(data)) is None  # truncated
    assert O.unpack_chunk(b"not zstd at all", 15) is None
    streamed = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(data)
    assert O.unpack_chunk(streamed, len(data)) is None  # no declared size: refused unread


def test_a_compression_bomb_is_refused_without_decoding_it():
    # 1 GiB of zeros in a few tens of KiB, its declared size rewritten to 1000 bytes
    cobj = zstandard.ZstdCompressor(level=1).compressobj(size=1 << 30)
    zero = bytes(MIB)
    bomb = b"".join(cobj.compress(zero) for _ in range(1024)) + cobj.flush()
    assert zstandard.frame_content_size(bomb) == 1 << 30
    assert O.unpack_chunk(bomb, 1000) is None  # declared 1 GiB, manifest says 1000
    fhd = bomb[4]
    assert fhd >> 6 == 2 and not fhd & 0x20  # a 4-byte size after one window byte
    lying = bomb[:6] + (1000).to_bytes(4, "little") + bomb[10:]
    assert zstandard.frame_content_size(lying) == 1000
    assert O.unpack_chunk(lying, 1000) is None  # zstd stops at the declared size


def test_a_hostile_store_object_is_refused_and_the_next_store_used(setup):
    # Given a compressed chunk whose copy in the first store is replaced by a bomb to the same key
    src = setup.tmp / "inv"
    src.mkdir()
    data = text(200_000, 9)  # one chunk (below the 256 KiB minimum)
    (src / "a.csv").write_bytes(data)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    (m,) = chain(setup)
    ((oid, _),) = m.entries[1].chunks
    assert oid in m.zstd
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    bomb = b"".join(cobj.compress(bytes(MIB)) for _ in range(256)) + cobj.flush()
    key = O.object_key(setup.policy.case_id, oid)
    s1, s2 = (open_store(u) for u in setup.policy.stores)
    s1.put(key, O.encrypt(bomb, setup.policy.release_recipient))
    # Then recovery reports that copy and reads the good one
    rep = R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / "out")
    assert (setup.tmp / "out/inv/a.csv").read_bytes() == data
    assert any("wrong length" in p for p in rep.store_problems)
    # And with the bomb in both stores, it fails naming the object
    s2.put(key, O.encrypt(bomb, setup.policy.release_recipient))
    with pytest.raises(StoreError, match=oid[:12]):
        R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / "out2")


def test_the_size_rule_separates_the_two_forms():
    # Every compressed object is smaller than the smallest object holding its chunk as is.
    for n in (4097, 65536, 65537, 300_000, 4 * MIB):
        data = text(n, n)
        payload, packed = O.pack_chunk(data)
        obj = O.encrypt(payload, "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
        assert O.stored_packed(len(obj), n) == packed
        raw = O.encrypt(data, "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
        assert len(raw) >= O.raw_object_min(n) and not O.stored_packed(len(raw), n)


def test_an_object_made_again_keeps_the_form_older_manifests_give(setup, monkeypatch):
    # Given a compressible file of several chunks (6 MiB: at least two, a chunk being at most
    # 4 MiB) deposited by a writer without compression nor packs (manifest version 1)
    src = setup.tmp / "inv"
    src.mkdir()
    data = text(6 * MIB, 11)
    (src / "a.csv").write_bytes(data)
    monkeypatch.setattr(O, "pack_chunk", lambda data, want=None: (data, False))
    monkeypatch.setattr(D, "PACK_MAX", 0)  # nor packs (version 3)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    monkeypatch.undo()
    (first,) = chain(setup)
    oids = {oid for e in first.entries for oid, _ in e.chunks}
    # When every copy of its objects is lost, `verify` forgets them, and a deposit makes them again
    for url in setup.policy.stores:
        for oid in oids:
            open_store(url).delete(O.object_key(setup.policy.case_id, oid))
    report = V.verify_case(setup.st, setup.st.case("caso"))
    assert len(report.missing) == 2 * len(oids)
    (src / "b.txt").write_bytes(b"otro\n")
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    # Then they are stored as they were (uncompressed, each under its own id, not in a pack
    # as a new chunk of a large file would be), so the first snapshot still reads
    _, second = chain(setup)
    assert len(oids) >= 2 and not oids & second.zstd and not oids & set(second.placed)
    for url in setup.policy.stores:
        assert all(open_store(url).has(O.object_key(setup.policy.case_id, o)) for o in oids)
    sids = sorted(p.name for p in (setup.tmp / "s1" / setup.policy.case_id / "snapshots").iterdir())
    for sid in sids:
        out = setup.tmp / f"out-{sid[:8]}"
        R.restore(setup.policy, [setup.key], list(setup.policy.stores), out, snapshot=sid)
        assert (out / "inv/a.csv").read_bytes() == data


class _Recording:
    """The worker's zstd compressor, noting the size of every input it is given."""

    def __init__(self, inner: zstandard.ZstdCompressor) -> None:
        self.inner, self.sizes = inner, []

    def compress(self, data) -> bytes:
        self.sizes.append(len(data))
        return self.inner.compress(data)


def test_media_is_tried_on_a_sample_only(monkeypatch):
    # Three quarters of a reporter's bytes are media: compressing a whole chunk of it only to
    # throw the frame away cost 0.34 CPU s per GiB. A sample of 64 KiB decides.
    rec = _Recording(O._cctx())
    monkeypatch.setattr(O._ZSTD, "cctx", rec)
    media = random.Random(3).randbytes(2 * MIB)
    assert O.pack_chunk(media) == (media, False)
    assert rec.sizes == [8 * 8192]
    # A chunk that is text in one quarter only, anywhere, is still compressed whole
    for at in (0, MIB // 8 + 1, 7 * MIB // 16, 3 * MIB // 2):
        rec.sizes.clear()
        mixed = media[:at] + text(MIB // 2, at) + media[at + MIB // 2 :]
        payload, packed = O.pack_chunk(mixed)
        assert packed and O.unpack_chunk(bytes(payload), len(mixed)) == mixed
        assert rec.sizes == [8 * 8192, 2 * MIB]
    # Small chunks (most text files) are compressed at once: a sample would cost as much
    rec.sizes.clear()
    assert O.pack_chunk(text(100_000))[1] and rec.sizes == [100_000]
