"""Runner of the drill message vectors (tests/vectors/drill, docs/protocol.md §11)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from vault.encoding import b64d, parse_json
from vault.errors import AuthenticationError, FormatError, VeladorError
from vault.nodeproto.messages import check_drill_answer, drill_digest
from vault.signing import verify_document

HERE = Path(__file__).resolve().parent
VECTORS = sorted((HERE / "drill").glob("*.txt"))
EXPECT = {"success": None, "format error": FormatError, "authentication error": AuthenticationError}
HEADERS = {"expect", "comment", "kind", "signer", "identity", "challenge", "digest"}


def load(path: Path) -> tuple[dict[str, str], bytes]:
    head, sep, body = path.read_bytes().partition(b"\n\n")
    assert sep, path.name
    headers = {}
    for line in head.decode().split("\n"):
        key, colon, value = line.partition(": ")
        assert colon and key in HEADERS and key not in headers, f"{path.name}: {line!r}"
        headers[key] = value
    assert headers["expect"] in EXPECT, path.name
    return headers, body.removesuffix(b"\n")


def run(h: dict[str, str], body: bytes) -> None:
    kind = h["kind"]
    if kind == "drill-answer":
        check_drill_answer(parse_json(body, "vector"), b64d(h["signer"], "signer", 32))
    elif kind == "drill-request":
        doc = parse_json(body, "vector")
        # A real-request verifier (label velador/v1/request) and the drill one: only the drill
        # label may accept it.
        if doc.get("kind") == "request":
            verify_document(dict(doc), "request", b64d(h["signer"], "signer", 32))
        else:
            verify_document(doc, "drill-request", b64d(h["signer"], "signer", 32))
    elif kind == "drill-challenge":
        key = PrivateKey(b64d(h["identity"], "identity", 32))
        try:
            plain = SealedBox(key).decrypt(b64d(body.decode(), "challenge"))
        except CryptoError as exc:
            raise AuthenticationError("the challenge does not open with this key") from exc
        assert plain.hex() == h["challenge"]
        assert drill_digest(plain) == h["digest"]
    else:
        raise AssertionError(f"unknown kind {kind}")


def test_vectors_exist():
    assert len(VECTORS) >= 8


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector(path: Path):
    headers, body = load(path)
    expected = EXPECT[headers["expect"]]
    if expected is None:
        run(headers, body)
        return
    with pytest.raises(VeladorError) as info:
        run(headers, body)
    assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"


def test_generator_reproduces_the_frozen_vectors(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("drill_gen", HERE / "generate_drill.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    written = gen.write(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in VECTORS)
    for p in written:
        assert p.read_bytes() == (HERE / "drill" / p.name).read_bytes(), p.name
