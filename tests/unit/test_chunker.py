"""Content-defined chunking: exact cover, bounded sizes, determinism, edit locality."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.chunker import WINDOW, chunk_bytes, chunk_file, make_chunker
from vault.constants import CHUNK_MAX, CHUNK_MIN
from vault.objects import object_id

KEY = bytes(32)


@pytest.fixture(scope="module")
def big() -> bytes:
    return random.Random(1234).randbytes(12 * 1024 * 1024)


def _check_cover(data: bytes, chunks: list[tuple[int, int]]) -> None:
    offset = 0
    for i, (off, length) in enumerate(chunks):
        assert off == offset
        assert length <= CHUNK_MAX
        if i < len(chunks) - 1:
            assert length >= CHUNK_MIN
        offset += length
    assert offset == len(data)


@settings(max_examples=20, deadline=None)
@given(
    size=st.integers(0, 3 * 1024 * 1024),
    seed=st.integers(0, 2**63 - 1),
    rnd=st.randoms(use_true_random=False),
)
def test_chunks_cover_input_exactly(size, seed, rnd):
    data = rnd.randbytes(size)
    chunks = chunk_bytes(data, seed)
    _check_cover(data, chunks)
    assert chunk_bytes(data, seed) == chunks  # deterministic


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), byte=st.integers(0, 255))
def test_constant_input_is_cut_at_max(seed, byte):
    data = bytes([byte]) * (CHUNK_MAX * 2 + 5)
    chunks = chunk_bytes(data, seed)
    _check_cover(data, chunks)


def test_big_buffer_cover_and_seed_dependence(big):
    a = chunk_bytes(big, 1)
    b = chunk_bytes(big, 2)
    _check_cover(big, a)
    _check_cover(big, b)
    assert a != b  # the secret seed moves the boundaries


def test_empty_input_has_no_chunks(tmp_path):
    assert chunk_bytes(b"", 1) == []
    (tmp_path / "e").write_bytes(b"")
    assert list(chunk_file(tmp_path / "e", 1)) == []


def test_file_and_buffer_agree(tmp_path, big):
    data = big[: 5 * 1024 * 1024]
    (tmp_path / "f").write_bytes(data)
    assert list(chunk_file(tmp_path / "f", 99)) == chunk_bytes(data, 99)


@settings(max_examples=8, deadline=None)
@given(pos=st.floats(0.05, 0.95), seed=st.integers(0, 2**63 - 1), delta=st.integers(1, 255))
def test_edit_in_the_middle_changes_few_chunks(big, pos, seed, delta):
    edited = bytearray(big)
    i = int(len(big) * pos)
    edited[i] = (edited[i] + delta) % 256
    edited = bytes(edited)
    ids_a = {object_id(KEY, big[o : o + n]) for o, n in chunk_bytes(big, seed)}
    ids_b = {object_id(KEY, edited[o : o + n]) for o, n in chunk_bytes(edited, seed)}
    assert len(ids_b - ids_a) <= 2


def test_insertion_in_the_middle_changes_few_chunks(big):
    mid = len(big) // 2
    edited = big[:mid] + b"inserted bytes" + big[mid:]
    ids_a = {object_id(KEY, big[o : o + n]) for o, n in chunk_bytes(big, 7)}
    ids_b = {object_id(KEY, edited[o : o + n]) for o, n in chunk_bytes(edited, 7)}
    assert len(ids_b - ids_a) <= 3


def test_seed_must_be_63_bits():
    with pytest.raises(ValueError, match="63-bit"):
        make_chunker(2**63)
    with pytest.raises(ValueError, match="63-bit"):
        make_chunker(-1)


@pytest.mark.parametrize(
    "size",
    [
        1,
        CHUNK_MIN - 1,
        CHUNK_MIN,
        CHUNK_MIN + 1,
        WINDOW - 1,
        WINDOW,
        WINDOW + 1,
        3 * WINDOW + 12345,
    ],
)
@pytest.mark.parametrize("kind", ["random", "zeros", "mixed"])
def test_file_and_buffer_agree_at_every_window_edge(tmp_path, big, size, kind):
    # The windowed reader must cut where the whole-buffer cut does: at its edges too, and on
    # data cut at CHUNK_MAX (zeros) where a cut looks as far ahead as it ever does.
    if kind == "random":
        data = (big * 3)[:size]
    elif kind == "zeros":
        data = bytes(size)
    else:
        data = (big[: size // 3] + bytes(size // 3) + big * 3)[:size]
    (tmp_path / "f").write_bytes(data)
    assert list(chunk_file(tmp_path / "f", 4321)) == chunk_bytes(data, 4321)


def test_a_small_file_is_one_chunk_without_being_read(tmp_path, monkeypatch):
    # Most files of a reporter's tree are below CHUNK_MIN: one chunk each, known from the size
    # (pyfastcdc's stream reader zero-filled an 8 MiB buffer for each of them).
    (tmp_path / "s").write_bytes(b"x" * CHUNK_MIN)

    def no_open(*args, **kwargs):
        raise AssertionError("a file of at most CHUNK_MIN bytes was opened to be chunked")

    monkeypatch.setattr("vault.chunker.open", no_open, raising=False)
    assert list(chunk_file(tmp_path / "s", 5)) == [(0, CHUNK_MIN)]
