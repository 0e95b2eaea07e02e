"""Run every test vector under tests/vectors/ through the real parsers (docs/format.md §10).

A vector is `key: value` header lines, a blank line, then the bytes. The runner refuses a header
key it does not know (a typo must not silently skip a check) and requires the exact error class
named by `expect:`, not a parent or a sibling.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import zstandard
from nacl.public import PrivateKey
from pyrage import x25519

from vault.cards import parse_card
from vault.encoding import b64d
from vault.envelope import check_envelope, open_envelope
from vault.errors import (
    AuthenticationError,
    FormatError,
    PolicyError,
    ShareError,
    UnsafePathError,
    VeladorError,
)
from vault.manifest import open_snapshot, snapshot_id
from vault.objects import encrypt
from vault.policy import parse_policy
from vault.shares import age_identity_str, check_mnemonic, combine_any
from vault.switch import parse_case_card

HERE = Path(__file__).resolve().parent

EXPECT: dict[str, type[VeladorError] | None] = {
    "success": None,
    "format error": FormatError,
    "unsafe path": UnsafePathError,
    "authentication error": AuthenticationError,
    "share error": ShareError,
    "policy error": PolicyError,
}
HEADERS = {
    "expect",  # success, or the error class above
    "comment",  # what the vector shows
    "kind",  # card | policy | envelope | shares | mnemonic | manifest | case
    "fingerprint",  # card: the fingerprint of a valid card
    "policy-hash",  # policy: the id of a valid policy; case: the policy hash a valid card pins
    "policy",  # envelope: the policy vector it is checked against (path under tests/vectors)
    "identity",  # envelope: the opener's X25519 secret key, base64url; absent = outer layer only
    "holder",  # envelope: the holder id a valid envelope names
    "recipient",  # shares: the case's age recipient (from the policy)
    "secret",  # shares: the release secret the shares give, hex
    "age-identity",  # shares: that secret as an age identity
    "reporter",  # manifest: the reporter's Ed25519 public key, base64url
    "case-id",  # manifest: the case the snapshot must belong to; case: the card's case id
    "compress",  # manifest: how the runner compresses the body before encrypting (COMPRESS)
}
REQUIRED = {"expect", "comment", "kind"}


def load(path: Path) -> tuple[dict[str, str], bytes]:
    raw = path.read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    assert sep, f"{path.name}: no blank line after the header"
    headers: dict[str, str] = {}
    for line in head.decode("utf-8").split("\n"):
        key, colon, value = line.partition(": ")
        assert colon, f"{path.name}: malformed header line {line!r}"
        assert key in HEADERS, f"{path.name}: unknown header key {key!r}"
        assert key not in headers, f"{path.name}: header {key!r} repeated"
        headers[key] = value
    missing = REQUIRED - set(headers)
    assert not missing, f"{path.name}: missing header(s) {sorted(missing)}"
    assert headers["expect"] in EXPECT, f"{path.name}: unknown expect {headers['expect']!r}"
    return headers, body.removesuffix(b"\n")


VECTORS = sorted(p for p in HERE.glob("*/*.txt") if p.parent.name != "drill")  # own runner


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


# --- one checker per kind: returns normally on success, raises the parser's error otherwise --


def run_card(h: dict[str, str], body: bytes) -> None:
    card = parse_card(body.decode("utf-8"))
    assert card.fingerprint == h["fingerprint"]


def run_policy(h: dict[str, str], body: bytes) -> None:
    policy = parse_policy(body)
    assert policy.hash == h["policy-hash"]


def run_envelope(h: dict[str, str], body: bytes) -> None:
    policy_headers, policy_body = load(HERE / h["policy"])
    assert policy_headers["expect"] == "success", "an envelope needs a valid policy"
    policy = parse_policy(policy_body)
    if "identity" in h:
        key = PrivateKey(b64d(h["identity"], "identity", 32))
        opened = open_envelope(body, policy, key)
        assert opened.holder == h["holder"]
        share = check_mnemonic(opened.mnemonic)
        assert (share.group_index, share.index) == (opened.group, opened.member)
    else:
        assert check_envelope(body, policy)["holder"] == h["holder"]


def run_shares(h: dict[str, str], body: bytes) -> None:
    mnemonics = json.loads(body)
    secret, used = combine_any(mnemonics, h["recipient"])
    assert secret.hex() == h["secret"]
    assert age_identity_str(secret) == h["age-identity"]
    assert set(used) <= set(mnemonics)


def run_mnemonic(h: dict[str, str], body: bytes) -> None:
    check_mnemonic(body.decode("utf-8"))


def _frame(data: bytes, sized: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=1, write_content_size=sized).compress(data)


SKIPPABLE = b"\x50\x2a\x4d\x18" + b"\x00" * 4  # an empty skippable frame (RFC 8878 §3.1.2)
COMPRESS = {
    # the form writers of version 3 use: one frame that declares its content size (§6.4)
    "zstd": _frame,
    # the body cut in two halves, one frame each: `zstd -d` would join them, a reader refuses
    "zstd, two frames": lambda b: _frame(b[: len(b) // 2]) + _frame(b[len(b) // 2 :]),
    # one frame, then an empty skippable frame: bytes after the frame
    "zstd, trailing bytes": lambda b: _frame(b) + SKIPPABLE,
    # one frame whose header does not declare its content size
    "zstd, no content size": lambda b: _frame(b, sized=False),
}


def run_manifest(h: dict[str, str], body: bytes) -> None:
    # The vector holds the plaintext of a snapshot object; age encryption is randomized, so the
    # object is made here, and the real open_snapshot checks id, decryption, signature, body.
    # With `compress:`, the age payload is the body compressed as that header says (§6.4, §10).
    ident = x25519.Identity.generate()
    payload = COMPRESS[h["compress"]](body) if "compress" in h else body
    blob = encrypt(payload, str(ident.to_public()))
    reporter = b64d(h["reporter"], "reporter key", 32)
    manifest = open_snapshot(blob, [ident], reporter, snapshot_id(blob), h["case-id"])
    assert manifest.case_id == h["case-id"]


def run_case(h: dict[str, str], body: bytes) -> None:
    card = parse_case_card(body.decode("utf-8"))
    assert (card.case_id, card.policy_hash) == (h["case-id"], h["policy-hash"])
    assert card.nodes and all(n.role == "node" and n.url for n in card.nodes)


RUNNERS = {
    "case": run_case,
    "card": run_card,
    "policy": run_policy,
    "envelope": run_envelope,
    "shares": run_shares,
    "mnemonic": run_mnemonic,
    "manifest": run_manifest,
}


def test_vectors_exist():
    assert len(VECTORS) >= 40
    assert {p.parent.name for p in VECTORS} == set(RUNNERS)


@pytest.mark.parametrize("path", VECTORS, ids=_id)
def test_vector(path: Path):
    headers, body = load(path)
    assert headers["kind"] == path.parent.name, "a vector lives in the folder of its kind"
    runner = RUNNERS[headers["kind"]]
    expected = EXPECT[headers["expect"]]
    if expected is None:
        runner(headers, body)
        return
    with pytest.raises(VeladorError) as info:
        runner(headers, body)
    assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"


def test_generator_reproduces_the_frozen_vectors(tmp_path: Path):
    """The seeded generator writes exactly the committed files (docs/format.md §10)."""
    spec = importlib.util.spec_from_file_location("velador_vector_generator", HERE / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    written = generate.write(tmp_path)
    names = sorted(p.relative_to(tmp_path) for p in written)
    assert names == sorted(p.relative_to(HERE) for p in VECTORS)
    for rel in names:
        assert (tmp_path / rel).read_bytes() == (HERE / rel).read_bytes(), f"{rel} changed"


def test_runner_refuses_unknown_header(tmp_path: Path):
    bad = tmp_path / "x.txt"
    bad.write_bytes(b"expect: success\ncomment: c\nkind: card\nexpct: typo\n\nbody\n")
    with pytest.raises(AssertionError, match="unknown header key"):
        load(bad)
