"""Content-defined chunking (docs/format.md §6.1).

FastCDC 2020 (pyfastcdc's Cython implementation, ~2 GB/s here) with a per-case secret gear seed:
boundaries then depend on a key only the reporter and the recipients hold, so the sizes of stored
objects cannot be matched against the chunk sizes of a known document (the attack restic answers
with a per-repository random polynomial).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pyfastcdc.cy import FastCDC

from .constants import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN

WINDOW = 2 * CHUNK_MAX
"""Bytes of a file held at once while it is cut: a cut looks at most CHUNK_MAX bytes ahead, so a
window of twice that is refilled only after CHUNK_MAX bytes were consumed, and the bytes kept
for the next cut never overlap the place they move to."""


def make_chunker(seed: int) -> FastCDC:
    if not 0 <= seed < 2**63:
        raise ValueError("chunker seed must be a 63-bit integer")
    return FastCDC(
        CHUNK_AVG, min_size=CHUNK_MIN, max_size=CHUNK_MAX, normalized_chunking=1, seed=seed
    )


def chunk_file(path: Path, seed: int) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) of each chunk of the file, in order; nothing for an empty file.

    The cuts are those of `chunk_bytes` over the file's first `size` bytes, `size` taken when
    the file is opened: a file that grows or shrinks meanwhile is caught by the caller, which
    compares the file's size and times before and after (vault.deposit).

    A file of at most CHUNK_MIN bytes is one chunk (FastCDC never cuts inside its minimum size),
    known without reading it: most files of a reporter's tree are that small, and pyfastcdc's
    stream reader zero-fills an 8 MiB buffer per file (0.2 ms each, 2,000 files: 0.4 CPU s).
    Up to WINDOW bytes are read at once and cut in memory; larger files are streamed through one
    bounded window rather than memory-mapped: a mapping would count the whole file in the
    process's resident size, and a file truncated while mapped kills the process with SIGBUS
    where a read just comes up short (docs/decisions.md §11).
    """
    size = os.path.getsize(path)
    if size == 0:
        return
    if size <= CHUNK_MIN:
        yield 0, size
        return
    with open(path, "rb", buffering=0) as fh:
        if size <= WINDOW:
            data = fh.read(size)  # short only if the file shrank: the caller sees it changed
            for c in make_chunker(seed).cut_buf(data):
                yield c.offset, c.length
            return
        yield from _cut_window(fh, size, make_chunker(seed))


def _cut_window(fh: BinaryIO, size: int, cdc: FastCDC) -> Iterator[tuple[int, int]]:
    """Cut the first `size` bytes of `fh` through a window of WINDOW bytes.

    A chunk is taken from the window only while at least CHUNK_MAX bytes follow its start (or
    the end of the input is in the window): the cut then sees exactly what it would see in the
    whole buffer, so the boundaries are those of `chunk_bytes`."""
    buf = bytearray(WINDOW)
    mv = memoryview(buf)
    base = start = end = 0  # buf[0] is at file offset `base`; buf[start:end] is not cut yet
    eof = False
    while True:
        if not eof and end - start < CHUNK_MAX:
            # end - start < CHUNK_MAX <= start (the window was full): no overlap in this move.
            mv[: end - start] = mv[start:end]
            base, end, start = base + start, end - start, 0
            while end < WINDOW and base + end < size:
                n = fh.readinto(mv[end : min(WINDOW, size - base)])
                if not n:
                    break
                end += n
            eof = base + end >= size or end < WINDOW
        if start == end:
            return
        cuts = cdc.cut_buf(mv[start:end])
        while start < end and (eof or end - start >= CHUNK_MAX):
            length = next(cuts).length
            yield base + start, length
            start += length
        del cuts


def chunk_bytes(data: bytes, seed: int) -> list[tuple[int, int]]:
    """Chunk an in-memory buffer (tests, small inputs)."""
    if not data:
        return []
    return [(c.offset, c.length) for c in make_chunker(seed).cut_buf(data)]
