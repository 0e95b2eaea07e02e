"""The C2SP/CCTV age vectors (tests/vectors/cctv-age) against vault/agev1.py.

Every vector with X25519 identities (or none) must give exactly its `expect:` class, and the
plaintext that authenticated must hash to `payload:` (all of it on success; the chunks before the
failure on a payload failure). Armor, scrypt and ML-KEM hybrid vectors are not implemented by the
engine: they are skipped and COUNTED, and the counts are asserted so that a run that silently
found no vectors (or misfiled some) fails.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest

from vault import agev1

DIR = Path(__file__).resolve().parents[1] / "vectors" / "cctv-age"
KNOWN_KEYS = {
    "expect",
    "payload",
    "file key",
    "identity",
    "passphrase",
    "armored",
    "compressed",
    "comment",
}
EXPECT = {
    "success": None,
    "header failure": agev1.HeaderError,
    "no match": agev1.NoMatchError,
    "HMAC failure": agev1.HmacError,
    "payload failure": agev1.PayloadError,
    "armor failure": None,  # only in armored vectors, which are skipped
}
EXPECTED_COUNTS = {"run": 67, "armor": 33, "scrypt": 25, "hybrid": 18}
"""Vectors of commit 1e3d2860 (tests/vectors/cctv-age/README.md) by what happens to them."""


def load(path: Path) -> tuple[dict[str, list[str]], bytes]:
    raw = path.read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    assert sep, f"{path.name}: no blank line after the vector header"
    meta: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, colon, value = line.partition(": ")
        assert colon and key in KNOWN_KEYS, f"{path.name}: unknown header line {line!r}"
        meta.setdefault(key, []).append(value)
    if meta.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    else:
        assert "compressed" not in meta, f"{path.name}: unknown compression"
    return meta, body


def category(meta: dict[str, list[str]]) -> str:
    if meta.get("armored") == ["yes"]:
        return "armor"
    if "passphrase" in meta:
        return "scrypt"
    if any(i.startswith("AGE-SECRET-KEY-PQ-") for i in meta.get("identity", [])):
        return "hybrid"
    return "run"


VECTORS = sorted(p for p in DIR.iterdir() if p.name not in ("README.md", "LICENSE"))


def test_every_vector_is_counted() -> None:
    counts = dict.fromkeys(EXPECTED_COUNTS, 0)
    for path in VECTORS:
        counts[category(load(path)[0])] += 1
    assert counts == EXPECTED_COUNTS


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.name)
def test_vector(path: Path) -> None:
    meta, data = load(path)
    kind = category(meta)
    if kind != "run":
        pytest.skip(f"{kind}: not implemented by the engine (counted)")
    (expect,) = meta["expect"]
    identities = [agev1.Identity.from_str(s) for s in meta.get("identity", [])]
    error = EXPECT[expect]
    released = b""
    try:
        opened = agev1.open_file(data, identities)
        out = bytearray(opened.size)
        try:
            opened.decrypt_into(out)
        finally:
            released = bytes(out[: opened.authenticated])
    except agev1.AgeError as exc:
        assert error is not None, f"{path.name}: expected success, got {exc!r}"
        assert type(exc) is error, f"{path.name}: expected {expect}, got {exc!r}"
    else:
        assert error is None, f"{path.name}: expected {expect}, but it decrypted"
    if "payload" in meta:
        assert hashlib.sha256(released).hexdigest() == meta["payload"][0]
