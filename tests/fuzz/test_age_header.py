"""The age header parser of vault/agev1.py, fuzzed (issue 14, "The age engine").

Properties, under the profiles of tests/fuzz/profiles.py:
- any bytes: `parse_header` returns a Header or raises HeaderError; `decrypt` returns or raises
  an AgeError (a VeladorError), never another exception;
- any well-formed header (random stanzas: arguments of any VCHAR, bodies of any length) survives
  serialize -> parse unchanged, and a file with extra unknown stanzas still opens, in the engine
  and in pyrage alike;
- a valid file with its header mutated (lines cut, doubled, swapped, bytes flipped, CR or spaces
  inserted, base64 characters changed): the engine and pyrage (the reference) agree on accepting
  it, and an accepted file gives the original plaintext.
"""

from __future__ import annotations

import os

import pyrage
from hypothesis import example, given
from hypothesis import strategies as st
from pyrage import x25519

from tests.fuzz.mutations import flipped
from tests.fuzz.profiles import FUZZ, fuzz_settings
from vault import agev1
from vault.errors import VeladorError

P_IDENT = x25519.Identity.from_str(
    "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"
)  # the CCTV vectors' test key
E_IDENT = agev1.Identity.from_str(str(P_IDENT))
RECIPIENT = agev1.Recipient.from_str(str(P_IDENT.to_public()))
DATA = os.urandom(70000)  # two chunks
VALID = bytes(agev1.encrypt(DATA, [RECIPIENT]))
HEADER_END = VALID.index(b"\n---") + 49

VCHAR = st.binary(min_size=1, max_size=12).map(lambda b: bytes(0x21 + (c % 94) for c in b))
STANZA = st.builds(
    agev1.Stanza,
    args=st.lists(VCHAR, min_size=1, max_size=4).map(tuple),
    body=st.binary(max_size=200),
)


def build(stanzas: list[agev1.Stanza], data: bytes) -> bytes:
    """An age file whose header carries `stanzas` beside one X25519 stanza for RECIPIENT, made
    from the engine's own pieces (the test needs the file key to MAC a chosen header)."""
    file_key = os.urandom(agev1.FILE_KEY_BYTES)
    header = agev1.serialize_header([*stanzas, agev1._wrap(RECIPIENT, file_key)], file_key)
    nonce = os.urandom(agev1.NONCE_BYTES)
    aead = agev1.ChaCha20Poly1305(agev1._hkdf(file_key, nonce, b"payload"))
    n = agev1.segments(len(data))
    chunks = [
        aead.encrypt(
            agev1._nonce(i, i == n - 1), data[i * agev1.SEGMENT : (i + 1) * agev1.SEGMENT], None
        )
        for i in range(n)
    ]
    return header + nonce + b"".join(chunks)


def outcome_engine(blob: bytes) -> bytes | None:
    try:
        return bytes(agev1.decrypt(blob, [E_IDENT]))
    except agev1.AgeError:
        return None


def outcome_pyrage(blob: bytes) -> bytes | None:
    try:
        return pyrage.decrypt(blob, [P_IDENT])
    except pyrage.DecryptError:
        return None


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.binary(max_size=300).map(lambda b: VALID[:60] + b)))
@example(b"age-encryption.org/v1\n")
@example(b"age-encryption.org/v1\n--- " + b"A" * 43 + b"\n")
@example(b"age-encryption.org/v1\n-> \n\n--- " + b"A" * 43 + b"\n")
def test_any_bytes_give_a_header_or_one_error(blob: bytes) -> None:
    try:
        header = agev1.parse_header(blob)
    except agev1.HeaderError:
        pass
    else:
        assert header.stanzas and len(header.mac) == 32 and header.end <= len(blob)
    try:
        agev1.decrypt(blob, [E_IDENT])
    except VeladorError as exc:
        assert isinstance(exc, agev1.AgeError)


@FUZZ
@given(st.lists(STANZA, min_size=1, max_size=5), st.binary(min_size=16, max_size=16))
def test_serialized_headers_parse_back(stanzas: list[agev1.Stanza], key: bytes) -> None:
    blob = agev1.serialize_header(stanzas, key)
    header = agev1.parse_header(blob + b"payload")
    assert list(header.stanzas) == stanzas
    assert header.end == len(blob) and blob[header.mac_end - 3 : header.mac_end] == b"---"
    assert header.mac == agev1._header_mac(key, blob[: header.mac_end])


@fuzz_settings(20, 0.3)
@given(
    st.lists(STANZA.filter(lambda s: s.args[0] not in (b"X25519", b"scrypt")), max_size=4),
    st.integers(0, 3 * 65536),
)
def test_unknown_stanzas_are_ignored_like_pyrage(stanzas: list[agev1.Stanza], size: int) -> None:
    data = DATA[: size % len(DATA)] * (size // len(DATA) + 1)
    data = data[:size]
    blob = build(stanzas, data)
    assert outcome_engine(blob) == data
    assert outcome_pyrage(blob) == data


def test_an_scrypt_stanza_must_be_alone() -> None:
    blob = build([agev1.Stanza((b"scrypt", b"AAAAAAAAAAAAAAAAAAAAAA", b"10"), bytes(32))], DATA)
    try:
        agev1.decrypt(blob, [E_IDENT])
    except agev1.HeaderError:
        return
    raise AssertionError("a header with scrypt beside X25519 was accepted")


@st.composite
def header_mutation(draw: st.DrawFn) -> bytes:
    lines = VALID[:HEADER_END].split(b"\n")[:-1]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "swap", "cr", "space", "b64", "cut", "bytes"]))
        line = lines[i]
        j = draw(st.integers(0, len(line)))
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, line)
        elif op == "swap":
            k = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
        elif op in ("cr", "space"):
            lines[i] = line[:j] + (b"\r" if op == "cr" else b" ") + line[j:]
        elif op == "b64" and line:
            j = min(j, len(line) - 1)
            lines[i] = line[:j] + bytes([draw(st.sampled_from(agev1._B64_CHARS))]) + line[j + 1 :]
        elif op == "cut":
            lines[i] = line[:j]
        else:
            lines[i] = draw(flipped(line))
    return b"\n".join(lines) + b"\n" + VALID[HEADER_END:]


@FUZZ
@given(
    st.one_of(
        header_mutation(),
        flipped(VALID[: HEADER_END + 40]).map(lambda h: h + VALID[HEADER_END + 40 :]),
    )
)
def test_mutated_headers_agree_with_pyrage(blob: bytes) -> None:
    ours, reference = outcome_engine(blob), outcome_pyrage(blob)
    assert ours == reference
    assert ours in (None, DATA)
