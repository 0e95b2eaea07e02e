"""Objects encrypted straight into staged files, and chunks decrypted in place (issue 2: memory).

A deposit worker streams pyrage's output into a staged copy per file store (`FileStore.open_stage`)
instead of holding the ciphertext; a recovery worker decrypts into a buffer of the chunk's length.
The bytes, the checks and the errors must be those of the buffered paths.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyrage
import pytest
from pyrage import x25519

from vault import objects as O
from vault.errors import AuthenticationError, StoreError
from vault.state import _SCHEMA
from vault.stores import FileStore

KEY = bytes(range(32))
CASE = "c" * 32


@pytest.fixture
def ident() -> x25519.Identity:
    return x25519.Identity.generate()


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_open_stage_writes_pieces_that_commit_as_one_object(tmp_path):
    store = FileStore(tmp_path)
    out = store.open_stage("c/objects/ab/k")
    for piece in (b"one ", memoryview(b"two "), b"three"):
        out.write(piece)
    token = out.finish()
    # Given a finished staged write, it stays invisible until committed, like stage()
    assert not store.has("c/objects/ab/k")
    store.commit([("c/objects/ab/k", token)])
    assert store.get("c/objects/ab/k") == b"one two three"


def test_an_aborted_stage_leaves_no_temp_file(tmp_path):
    store = FileStore(tmp_path)
    out = store.open_stage("c/objects/ab/k")
    out.write(b"half")
    out.abort()
    assert _temps(tmp_path) == [] and not store.has("c/objects/ab/k")


def _worker(tmp_path: Path, ident: x25519.Identity, n: int = 2) -> list[FileStore]:
    db = tmp_path / "state.db"
    import sqlite3

    conn = sqlite3.connect(db)
    conn.executescript(_SCHEMA)  # the real index: tables and the `known` view
    conn.commit()
    conn.close()
    urls = [(tmp_path / f"s{i}").as_uri() for i in range(n)]
    O.init_deposit_worker(CASE, urls, None, KEY, str(ident.to_public()), str(db))
    return [FileStore(tmp_path / f"s{i}") for i in range(n)]


def test_streamed_chunk_is_identical_in_every_store_and_opens_with_age(tmp_path, ident):
    stores = _worker(tmp_path, ident)
    data = os.urandom(300_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    r = O.store_chunk((0, str(src), src.stat().st_ino, 0, len(data)))
    O.release_file()
    _, _, oid, length, csize, chash, uploaded, new, tokens, changed, _, _ = r
    assert (length, new, changed) == (len(data), True, False)
    key = O.object_key(CASE, oid)
    for (i, token), store in zip(tokens, stores, strict=True):
        assert i == stores.index(store)
        store.commit([(key, token)])
    copies = [s.get(key) for s in stores]
    # Then both replicas hold the same bytes, whose size and hash are the ones reported,
    assert copies[0] == copies[1] and len(copies[0]) == csize and uploaded == 2 * csize
    assert O.cipher_hash(copies[0]) == chash
    # a plain age file of the chunk, named by its keyed hash
    assert pyrage.decrypt(copies[0], [ident]) == data and oid == O.object_id(KEY, data)


def test_a_failed_staged_write_reports_the_store_error_and_leaves_no_temp(
    tmp_path, ident, monkeypatch
):
    _worker(tmp_path, ident)
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(200_000))
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StoreError, match="no space left on device"):
        O.store_chunk((0, str(src), src.stat().st_ino, 0, 200_000))
    monkeypatch.undo()
    O.release_file()
    assert _temps(tmp_path / "s0") == [] and _temps(tmp_path / "s1") == []


def test_open_chunk_into_checks_length_and_id(ident):
    data = os.urandom(200_000)
    oid = O.object_id(KEY, data)
    ct = pyrage.encrypt(data, [ident.to_public()])
    assert bytes(O.open_chunk_into(ct, [ident], KEY, oid, len(data)) or b"") == data
    # A plaintext longer or shorter than the manifest says is refused, never written
    assert O.open_chunk_into(ct, [ident], KEY, oid, len(data) - 1) is None
    assert O.open_chunk_into(ct, [ident], KEY, oid, len(data) + 1) is None
    # a valid age file of other bytes (anyone can encrypt to the recipient) is a substitution
    other = pyrage.encrypt(os.urandom(len(data)), [ident.to_public()])
    with pytest.raises(AuthenticationError, match="does not match its id"):
        O.open_chunk_into(other, [ident], KEY, oid, len(data))
    # and a damaged one does not decrypt
    bad = bytearray(ct)
    bad[len(bad) // 2] ^= 1
    with pytest.raises(AuthenticationError, match="does not decrypt"):
        O.open_chunk_into(bytes(bad), [ident], KEY, oid, len(data))
