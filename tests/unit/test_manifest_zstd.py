"""Version 3 snapshot manifests are stored as one zstd frame (docs/format.md §6.4, "Compressed
manifests").

What a reporter relies on: on a slow uplink a deposit sends a fifth of the manifest it sent
before, to every store, and recovery still reads it. What a recipient relies on: a hostile store
or a compression bomb cannot make the reader allocate more than an uncompressed manifest could,
and every reader agrees on which snapshots exist (a compressed version 1 or 2 is refused, as the
readers of those versions would refuse it).
"""

from __future__ import annotations

import dataclasses
import json
import random
import struct
import tracemalloc

import pyrage
import pytest
import zstandard
from nacl.signing import SigningKey
from pyrage import x25519

from vault import deposit as D
from vault import recover as R
from vault.clock import FakeClock
from vault.constants import MAX_MANIFEST_BYTES
from vault.encoding import canonical_json
from vault.errors import FormatError
from vault.manifest import (
    ZSTD_MAGIC,
    Entry,
    Manifest,
    open_snapshot,
    seal_snapshot,
    snapshot_id,
    unpack_manifest,
)
from vault.objects import encrypt, object_id
from vault.signing import sign_document
from vault.stores import open_store

from .test_compression import chain, make_case, text, tree

KEY = SigningKey(bytes(range(32)))
CHUNK_KEY = bytes(32)
IDENT = x25519.Identity.generate()


def manifest(version: int) -> Manifest:
    """A manifest of the given version: a chunk as it is, compressed (2), or in a pack (3)."""
    a, b = b"nota uno\n", b"nota dos\n"
    oa, ob = object_id(CHUNK_KEY, a), object_id(CHUNK_KEY, b)
    pid = object_id(CHUNK_KEY, a + b)
    m = Manifest(
        case_id="case0001",
        policy_hash="p" * 64,
        seq=1,
        created=1_700_000_000,
        parent=None,
        label="caso",
        chunk_key=CHUNK_KEY,
        chunker_seed=42,
        entries=(
            Entry("inv", "dir", 0o755, 1),
            Entry("inv/a.txt", "file", 0o644, 1, len(a), ((oa, len(a)),)),
            Entry("inv/b.txt", "file", 0o644, 1, len(b), ((ob, len(b)),)),
        ),
        roots=("inv",),
    )
    if version == 2:
        m = dataclasses.replace(m, zstd=frozenset({oa}))
    if version == 3:
        m = dataclasses.replace(
            m, packs={pid: len(a + b)}, placed={oa: (pid, 0), ob: (pid, len(a))}
        )
    assert m.version == version
    return m


def document(version: int) -> bytes:
    return canonical_json(sign_document("snapshot", manifest(version).body(), KEY))


def open_payload(payload: bytes) -> Manifest:
    """The real reader on a snapshot object whose age payload is `payload`."""
    blob = encrypt(payload, str(IDENT.to_public()))
    return open_snapshot(blob, [IDENT], KEY.verify_key.encode(), snapshot_id(blob), "case0001")


def frame(data: bytes, sized: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=1, write_content_size=sized).compress(data)


def crafted(declared: int, window_log: int, *blocks: tuple[int, bool]) -> bytes:
    """A zstd frame header that declares `declared` bytes and a 2**window_log window, then RLE
    blocks of `{` (RFC 8878 §3.1.1): a bomb writes many bytes from a few."""
    out = ZSTD_MAGIC + bytes([0xC0, (window_log - 10) << 3]) + struct.pack("<Q", declared)
    for n, last in blocks:
        out += struct.pack("<I", n << 3 | 1 << 1 | last)[:3] + b"{"
    return out


@pytest.mark.parametrize("version", [1, 2, 3])
def test_only_version_3_is_sealed_compressed(version):
    # When a manifest is sealed
    sid, blob = seal_snapshot(manifest(version), KEY, str(IDENT.to_public()))
    payload = pyrage.decrypt(blob, [IDENT])
    # Then version 3 is one frame of the canonical document, and versions 1 and 2 the document
    plain = document(version)
    if version == 3:
        assert payload[:4] == ZSTD_MAGIC and zstandard.frame_content_size(payload) == len(plain)
        assert zstandard.ZstdDecompressor().decompress(payload) == plain
    else:
        assert payload == plain
    # and the id is still the hash of the stored bytes, and the reader opens it
    assert sid == snapshot_id(blob)
    assert open_snapshot(blob, [IDENT], KEY.verify_key.encode(), sid, "case0001") == (
        manifest(version)
    )


def test_version_3_reads_in_either_form():
    assert open_payload(frame(document(3))) == open_payload(document(3)) == manifest(3)


@pytest.mark.parametrize("version", [1, 2])
def test_a_compressed_version_1_or_2_is_refused(version):
    # A reader of version 1 or 2 could not parse it; this one must not accept it either
    with pytest.raises(FormatError, match="compressed, which only a manifest of version 3"):
        open_payload(frame(document(version)))
    assert open_payload(document(version)) == manifest(version)


HOSTILE = {
    "trailing byte": lambda d: frame(d) + b"\n",
    "two frames": lambda d: frame(d[:100]) + frame(d[100:]),
    "skippable frame after": lambda d: frame(d) + b"\x50\x2a\x4d\x18" + bytes(4),
    "no declared size": lambda d: frame(d, sized=False),
    "truncated": lambda d: frame(d)[:-4],
    "magic alone": lambda d: ZSTD_MAGIC,
    "declares nothing": lambda d: crafted(0, 20, (0, True)) + d,
    "declares less than it holds": lambda d: crafted(1000, 20, (1000, False), (1000, True)),
    "declares more than it holds": lambda d: crafted(3000, 20, (1000, True)),
    "window over 8 MiB": lambda d: crafted(1000, 24, (1000, True)),
}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_frames_are_refused(make):
    # Given a validly signed version 3 document in each malformed frame
    with pytest.raises(FormatError, match="is not a valid zstd frame"):
        open_payload(make(document(3)))


def test_a_window_of_8_mib_is_accepted():
    plain, packed = unpack_manifest(crafted(1000, 23, (1000, True)), "s")
    assert packed and plain == b"{" * 1000


@pytest.mark.parametrize(
    ("declared", "blocks", "match"),
    [
        # over the limit of an uncompressed manifest: refused before any byte is decoded
        (MAX_MANIFEST_BYTES + 1, [(1 << 17, False)] * 3 + [(1, True)], "too large"),
        # within it, but the blocks write past the declared size: zstd stops at the buffer
        (1 << 20, [(1 << 17, False)] * 64 + [(1, True)], "not a valid zstd frame"),
    ],
)
def test_a_bomb_is_refused_within_its_declared_size(declared, blocks, match):
    payload = crafted(declared, 23, *blocks)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=match):
            unpack_manifest(payload, "s")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= min(declared, 1 << 20) + (1 << 20)


def test_json_is_never_taken_for_a_frame():
    for payload in (document(3), b" " + document(3), b"[]", b""):
        assert unpack_manifest(payload, "s") == (payload, False)


def test_a_deposit_stores_version_3_compressed_and_recovers_it(tmp_path, monkeypatch):
    setup = make_case(tmp_path)
    # Given 150 small notes (packed: version 3), then a ledger and a video (version 2, no packs)
    rnd = random.Random(3)
    notes = setup.tmp / "notas"
    notes.mkdir()
    for i in range(150):
        (notes / f"{i:03d}-entrevista.txt").write_bytes(text(rnd.randint(200, 3000), i))
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [notes], FakeClock())
    big = setup.tmp / "datos"
    big.mkdir()
    (big / "ledger.csv").write_bytes(text(600_000, 9))
    (big / "video.bin").write_bytes(rnd.randbytes(300_000))
    # (by a writer without packs: the ledger's chunks would be packed whenever the case's random
    # chunker seed cuts it in two, which made this a version 3 snapshot now and then)
    monkeypatch.setattr(D, "PACK_MAX", 0)
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [big], FakeClock())
    monkeypatch.undo()
    first, second = chain(setup)
    assert (first.version, second.version) == (3, 2)
    # Then the version 3 snapshot is stored as a frame far smaller than its JSON, the other as JSON
    ident = x25519.Identity.from_str(setup.key)
    store = open_store(setup.policy.stores[0])
    forms = {}
    for key in store.list(f"{setup.policy.case_id}/snapshots/"):
        blob = store.get(key)
        payload = pyrage.decrypt(blob, [ident])
        plain, packed = unpack_manifest(payload, "s")
        forms[json.loads(plain)["body"]["v"]] = packed
        if packed:
            assert len(blob) < len(plain) / 3
        else:
            assert plain[:1] == b"{"
    assert forms == {3: True, 2: False}
    # and recovery gives both trees back
    report = R.restore(setup.policy, [setup.key], list(setup.policy.stores), tmp_path / "out")
    assert report.files == 152
    assert tree(tmp_path / "out" / "notas") == tree(notes)
    assert tree(tmp_path / "out" / "datos") == tree(big)
