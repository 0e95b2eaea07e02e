"""The leak scanner itself: every encoding it claims to search is found, padded at any offset."""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import lzma
import os
import unicodedata
import zlib
from urllib.parse import quote

import pytest

from tests.leak.scan import Scanner

MARK = unicodedata.normalize("NFC", "LEAKMARK-ufilename-\u00f1and\u00fa-0123456789ab")


def encodings(s: str) -> dict[str, bytes]:
    raw = s.encode()
    nfd = unicodedata.normalize("NFD", s)
    return {
        "utf-8": raw,
        "nfd": nfd.encode(),
        "upper": s.upper().encode(),
        "utf-16-le": s.encode("utf-16-le"),
        "utf-16-be": nfd.encode("utf-16-be"),
        "url": quote(s).encode(),
        "json": json.dumps(s).encode(),
        "hex": raw.hex().encode(),
        **{f"base64@{pad}": base64.b64encode(b"x" * pad + raw) for pad in range(3)},
        **{f"base64url@{pad}": base64.urlsafe_b64encode(b"y" * pad + raw) for pad in range(3)},
        "gzip": gzip.compress(b"pad " + raw),
        "zlib": zlib.compress(b"pad " + raw),
        "bz2": bz2.compress(b"pad " + raw),
        "xz": lzma.compress(b"pad " + raw),
    }


@pytest.mark.parametrize("form", sorted(encodings(MARK)))
def test_each_encoding_is_found(form):
    data = encodings(MARK)[form]
    if form not in ("gzip", "zlib", "bz2", "xz"):
        data = os.urandom(37) + data + os.urandom(11)
    hits = Scanner({"filename-unicode": MARK}).search("x", "buffer", data)
    assert {h.kind for h in hits} == {"filename-unicode"}, form


def test_no_false_hit_on_noise_or_another_marker():
    s = Scanner({"a": "LEAKMARK-a-0123456789ab"})
    assert not s.search("x", "noise", os.urandom(1 << 20))
    assert not s.search("x", "other", b"LEAKMARK-a-0123456789ac LEAKMARK-a-")
