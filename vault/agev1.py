"""The age v1 file format, X25519 recipients only (C2SP age spec, https://c2sp.org/age).

Velador's stored objects are plain age files (docs/format.md §6.3); this module writes and reads
them with `cryptography`'s primitives (X25519, HKDF-SHA-256, HMAC-SHA-256, ChaCha20-Poly1305
through OpenSSL), because pyrage's per-byte cost bounded deposits and recoveries
(docs/decisions.md (15)). No primitive is implemented here: only the age framing. pyrage stays
the reference in the tests (tests/unit/test_age_differential.py), together with the stock `age`
binary and the C2SP/CCTV vectors (tests/unit/test_age_vectors.py).

Reading follows the spec's MUSTs, and refuses in the four classes the CCTV vectors name:

    AgeError                  (VeladorError)
    ├── HeaderError           (FormatError)          the header is not canonical age v1
    ├── NoMatchError          (AuthenticationError)  no X25519 stanza opens with these keys
    ├── HmacError             (AuthenticationError)  the header MAC does not verify
    └── PayloadError          (AuthenticationError)  the STREAM payload is altered or cut

Scrypt, ML-KEM hybrid, plugin stanzas and ASCII armor are not implemented: unknown stanzas are
ignored as the spec requires (except that an scrypt stanza must be alone), armor is a header
error. Inputs are whole objects in memory (a store returns an object's bytes); the plaintext and
the ciphertext are produced segment by segment into preallocated buffers, never a growing one.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

import bech32
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import N_, AuthenticationError, FormatError, VeladorError

VERSION_LINE = b"age-encryption.org/v1\n"
"""The v1 version line; any other `age-encryption.org/` version is refused."""
X25519_LABEL = b"age-encryption.org/v1/X25519"
"""HKDF info of the X25519 wrap key (spec: the X25519 recipient type)."""
FILE_KEY_BYTES = 16
NONCE_BYTES = 16
"""The payload nonce that follows the header."""
SEGMENT = 64 * 1024
"""Plaintext bytes per STREAM chunk."""
TAG_BYTES = 16
ENC_SEGMENT = SEGMENT + TAG_BYTES
BODY_COLUMNS = 64
"""Stanza bodies are wrapped at 64 columns; a shorter line (maybe empty) ends the stanza."""
WRITE_SEGMENTS = 4
"""Segments encrypted per write to a sink (256 KiB): few system calls, a small buffer."""

_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ZERO_NONCE = bytes(12)
_SECRET_HRP = "age-secret-key-"  # noqa: S105 (the bech32 prefix, not a secret)
_PUBLIC_HRP = "age"


class AgeError(VeladorError):
    """An age file that this engine refuses to open."""


class HeaderError(AgeError, FormatError):
    """The header is not canonical age v1, or a stanza addressed to X25519 is malformed."""


class NoMatchError(AgeError, AuthenticationError):
    """No X25519 stanza in the header opens with the given identities."""


class HmacError(AgeError, AuthenticationError):
    """The header MAC does not verify under the unwrapped file key."""


class PayloadError(AgeError, AuthenticationError):
    """The payload is truncated, extended or altered (STREAM authentication failed)."""


# --- keys -----------------------------------------------------------------------------------------


def _bech32_decode(text: str, hrp: str) -> bytes:
    got_hrp, data = bech32.bech32_decode(text)
    if got_hrp != hrp or data is None:
        raise FormatError(N_("not an age key of the expected kind"))
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != 32:
        raise FormatError(N_("not an age key of the expected kind"))
    return bytes(raw)


class Recipient:
    """An age X25519 recipient (`age1...`): the public half of a release key."""

    __slots__ = ("key", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.key = X25519PublicKey.from_public_bytes(raw)

    @classmethod
    def from_str(cls, text: str) -> Recipient:
        return cls(_bech32_decode(text, _PUBLIC_HRP))

    def __str__(self) -> str:
        return str(bech32.bech32_encode(_PUBLIC_HRP, bech32.convertbits(list(self.raw), 8, 5)))

    def __repr__(self) -> str:
        return f"Recipient({self})"


class Identity:
    """An age X25519 identity (`AGE-SECRET-KEY-1...`). Its repr never shows the secret."""

    __slots__ = ("_key", "public")

    def __init__(self, secret: bytes) -> None:
        self._key = X25519PrivateKey.from_private_bytes(secret)
        self.public = self._key.public_key().public_bytes_raw()

    @classmethod
    def from_str(cls, text: str) -> Identity:
        return cls(_bech32_decode(text, _SECRET_HRP))

    def to_public(self) -> Recipient:
        return Recipient(self.public)

    def __repr__(self) -> str:
        return f"Identity(public={self.to_public()})"

    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key if `stanza` is an X25519 stanza addressed to this identity, else None.

        Spec, X25519 recipient type: a stanza whose first argument is not `X25519` is ignored;
        one that is must have exactly one more argument, the canonical base64 of 32 bytes, and a
        32-byte body (checked before decrypting, against partitioning oracles); an all-zero
        shared secret aborts. `cryptography` refuses that secret itself (ValueError)."""
        if not stanza.args or stanza.args[0] != b"X25519":
            return None
        if len(stanza.args) != 2:
            raise HeaderError(N_("an X25519 stanza must have exactly one argument"))
        share = b64decode(stanza.args[1])
        if len(share) != 32:
            raise HeaderError(N_("an X25519 stanza's share is not 32 bytes"))
        if len(stanza.body) != FILE_KEY_BYTES + TAG_BYTES:
            raise HeaderError(N_("an X25519 stanza's body is not 32 bytes"))
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError as exc:  # a low-order share: the shared secret is all zero
            raise HeaderError(N_("an X25519 stanza has a low-order share")) from exc
        wrap_key = _hkdf(shared, share + self.public, X25519_LABEL)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            return None  # addressed to someone else


def as_identities(identities: Iterable[Any]) -> list[Identity]:
    """These identities as engine identities; others (pyrage's) are read from their string form."""
    return [i if isinstance(i, Identity) else Identity.from_str(str(i)) for i in identities]


def as_recipient(recipient: Recipient | str) -> Recipient:
    return recipient if isinstance(recipient, Recipient) else Recipient.from_str(recipient)


# --- header ---------------------------------------------------------------------------------------


# NamedTuples rather than dataclasses, and os.urandom rather than `secrets`: those modules would
# cost each worker process megabytes of imports (inspect; hmac and the system's libcrypto).


class Stanza(NamedTuple):
    """One recipient stanza: its arguments (1*VCHAR each) and its decoded body."""

    args: tuple[bytes, ...]
    body: bytes


class Header(NamedTuple):
    """A parsed header: its stanzas, its MAC, where the MAC input ends (just after `---`), and
    where the payload starts."""

    stanzas: tuple[Stanza, ...]
    mac: bytes
    mac_end: int
    end: int


def b64decode(text: bytes) -> bytes:
    """Canonical unpadded base64 (spec, conventions): no `=`, no other character, and the unused
    low bits of the last character zero (re-encoding gives back the same text)."""
    if text.translate(None, _B64_CHARS) or len(text) % 4 == 1:
        raise HeaderError(N_("the age header has invalid base64"))
    try:
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise HeaderError(N_("the age header has invalid base64")) from exc
    if b64encode(raw) != text:
        raise HeaderError(N_("the age header has non-canonical base64"))
    return raw


def b64encode(raw: bytes) -> bytes:
    return base64.b64encode(raw).rstrip(b"=")


def _is_vchar(arg: bytes) -> bool:
    return bool(arg) and min(arg) >= 0x21 and max(arg) <= 0x7E


def parse_header(data: bytes) -> Header:
    """Parse the header at the start of `data` (spec: ABNF definition of file header)."""
    if not data.startswith(VERSION_LINE):
        if data.startswith(b"age-encryption.org/"):
            raise HeaderError(N_("unsupported age version"))
        raise HeaderError(N_("not an age file"))
    pos = len(VERSION_LINE)
    stanzas: list[Stanza] = []
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise HeaderError(N_("the age header is cut short"))
        line = data[pos:nl]
        if line.startswith(b"-> "):
            args = tuple(line[3:].split(b" "))
            if not all(_is_vchar(a) for a in args):
                raise HeaderError(N_("an age stanza has an empty or invalid argument"))
            pos = nl + 1
            body_lines = []
            while True:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    raise HeaderError(N_("the age header is cut short"))
                body_line = data[pos:nl]
                pos = nl + 1
                if len(body_line) > BODY_COLUMNS:
                    raise HeaderError(N_("an age stanza body line is too long"))
                body_lines.append(body_line)
                if len(body_line) < BODY_COLUMNS:
                    break
            stanzas.append(Stanza(args, b64decode(b"".join(body_lines))))
        elif line.startswith(b"---"):
            if not stanzas:
                raise HeaderError(N_("the age header has no recipient stanza"))
            if len(line) != 4 + 43 or line[3:4] != b" ":
                raise HeaderError(N_("the age header MAC line is malformed"))
            return Header(tuple(stanzas), b64decode(line[4:]), pos + 3, nl + 1)
        else:
            raise HeaderError(N_("the age header has an unexpected line"))


def serialize_stanza(stanza: Stanza) -> bytes:
    """A stanza as it is written: `-> args`, then the body wrapped at 64 columns and ended by a
    shorter line (empty when the body fills its last line)."""
    text = b64encode(stanza.body)
    lines = [text[i : i + BODY_COLUMNS] for i in range(0, len(text), BODY_COLUMNS)]
    if not lines or len(lines[-1]) == BODY_COLUMNS:
        lines.append(b"")
    return b"-> " + b" ".join(stanza.args) + b"\n" + b"".join(ln + b"\n" for ln in lines)


def serialize_header(stanzas: Sequence[Stanza], file_key: bytes) -> bytes:
    """The header for `stanzas`, MAC'ed with `file_key` (spec: header MAC)."""
    head = VERSION_LINE + b"".join(serialize_stanza(s) for s in stanzas) + b"---"
    return head + b" " + b64encode(_header_mac(file_key, head)) + b"\n"


# --- primitives, composed (never implemented here) ------------------------------------------------


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _header_mac(file_key: bytes, head: bytes) -> bytes:
    # An empty HKDF salt is HashLen zero bytes (RFC 5869 §2.2), which None selects.
    h = hmac.HMAC(_hkdf(file_key, None, b"header"), hashes.SHA256())
    h.update(head)
    return h.finalize()


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _wrap(recipient: Recipient, file_key: bytes) -> Stanza:
    ephemeral = X25519PrivateKey.generate()  # a new one per stanza and per file, as required
    share = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(recipient.key)
    except ValueError as exc:  # a low-order point: the shared secret would be all zero
        raise FormatError(N_("the age recipient is not a usable X25519 key")) from exc
    wrap_key = _hkdf(shared, share + recipient.raw, X25519_LABEL)
    body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
    return Stanza((b"X25519", b64encode(share)), body)


# --- encryption -----------------------------------------------------------------------------------


def segments(length: int) -> int:
    """STREAM chunks for a `length`-byte plaintext: an empty payload is one empty final chunk."""
    return max(1, -(-length // SEGMENT))


def payload_size(length: int) -> int:
    """Bytes after the header for a `length`-byte plaintext: nonce, data, one tag per chunk."""
    return NONCE_BYTES + length + TAG_BYTES * segments(length)


class Sink(Protocol):
    def write(self, data: memoryview) -> Any: ...


class _Writer:
    """A fresh file key, its header and payload key: one per encrypted file."""

    def __init__(self, recipients: Iterable[Recipient | str]) -> None:
        file_key = os.urandom(FILE_KEY_BYTES)  # the OS CSPRNG, as secrets uses
        rs = [as_recipient(r) for r in recipients]
        if not rs:
            raise ValueError("at least one recipient is required")
        self.header = serialize_header([_wrap(r, file_key) for r in rs], file_key)
        self.nonce = os.urandom(NONCE_BYTES)
        self.aead = ChaCha20Poly1305(_hkdf(file_key, self.nonce, b"payload"))

    def segment_into(self, data: memoryview, i: int, n: int, out: memoryview) -> int:
        """Encrypt chunk `i` of `n` into `out`; returns the bytes written."""
        piece = data[i * SEGMENT : (i + 1) * SEGMENT]
        size = len(piece) + TAG_BYTES
        self.aead.encrypt_into(_nonce(i, i == n - 1), piece, None, out[:size])
        return size


def encrypt(
    data: bytes | bytearray | memoryview, recipients: Iterable[Recipient | str]
) -> bytearray:
    """An age file of `data` for `recipients`, written into one buffer of its exact final size."""
    w = _Writer(recipients)
    view = memoryview(data).cast("B")
    n = segments(len(view))
    out = bytearray(len(w.header) + payload_size(len(view)))
    ov = memoryview(out)
    pos = len(w.header) + NONCE_BYTES
    ov[:pos] = w.header + w.nonce
    for i in range(n):
        pos += w.segment_into(view, i, n, ov[pos:])
    ov.release()
    return out


def encrypt_to(
    data: bytes | bytearray | memoryview, recipients: Iterable[Recipient | str], sink: Sink
) -> int:
    """Encrypt `data` to `sink` in pieces of up to WRITE_SEGMENTS chunks, through one reused
    buffer: `sink.write` must consume each piece before it returns. Returns the bytes written."""
    w = _Writer(recipients)
    view = memoryview(data).cast("B")
    n = segments(len(view))
    sink.write(memoryview(w.header + w.nonce))
    total = len(w.header) + NONCE_BYTES
    buf = memoryview(bytearray(min(n, WRITE_SEGMENTS) * ENC_SEGMENT))
    for first in range(0, n, WRITE_SEGMENTS):
        pos = 0
        for i in range(first, min(n, first + WRITE_SEGMENTS)):
            pos += w.segment_into(view, i, n, buf[pos:])
        sink.write(buf[:pos])
        total += pos
    return total


# --- decryption -----------------------------------------------------------------------------------


class Opened:
    """An age file whose header verified: the plaintext size is known before any is decrypted,
    so that a caller can refuse a wrong size or decrypt into a buffer of exactly that size."""

    def __init__(self, data: bytes, header: Header, file_key: bytes) -> None:
        nonce = data[header.end : header.end + NONCE_BYTES]
        if len(nonce) != NONCE_BYTES:  # CCTV classes a missing or short nonce with the header
            raise HeaderError(N_("the age file has no payload nonce"))
        self._view = memoryview(data)[header.end + NONCE_BYTES :]
        stored = len(self._view)
        # Every chunk but the last is full, so the layout follows from the length; a payload
        # that breaks it fails in decrypt_into, at the chunk where a streaming reader would.
        self.chunks = max(1, -(-stored // ENC_SEGMENT))
        if stored - (self.chunks - 1) * ENC_SEGMENT >= TAG_BYTES:
            self.size = stored - TAG_BYTES * self.chunks
        else:  # a last chunk shorter than a tag: room for the full chunks before it, which fail
            self.size = (self.chunks - 1) * SEGMENT
        self.authenticated = 0
        """Plaintext bytes at the start of the output that did authenticate: after a failure,
        what a streaming reader would have released (the CCTV vectors check it)."""
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))

    def decrypt_into(self, out: bytearray | memoryview) -> None:
        """Decrypt and authenticate every chunk into `out` (exactly `size` bytes). On a failure
        `out` holds unauthenticated bytes and must be discarded.

        Spec, payload: chunks of 64 KiB with a big-endian counter and a last-chunk flag; the last
        chunk may be short but not empty unless the whole payload is; nothing may follow it. A
        full chunk at the very end is the final one; one that opens only as final while more
        data follows is refused as trailing data, as age's streaming reader does."""
        ov = memoryview(out).cast("B")
        if len(ov) != self.size:
            raise ValueError("the output buffer must be exactly the plaintext size")
        stored = len(self._view)
        pos = i = 0
        while True:
            take = min(stored - pos, ENC_SEGMENT)
            if take == 0:
                raise PayloadError(N_("the age payload has no final chunk"))
            if take < TAG_BYTES:
                raise PayloadError(N_("the age payload is cut short"))
            last = take < ENC_SEGMENT
            ct = self._view[pos : pos + take]
            dst = ov[pos - i * TAG_BYTES : pos - i * TAG_BYTES + take - TAG_BYTES]
            try:
                self._aead.decrypt_into(_nonce(i, last), ct, None, dst)
            except InvalidTag as exc:
                if last:
                    raise PayloadError(N_("the age payload does not authenticate")) from exc
                try:  # a full chunk may be the final one
                    self._aead.decrypt_into(_nonce(i, True), ct, None, dst)
                except InvalidTag as exc2:
                    raise PayloadError(N_("the age payload does not authenticate")) from exc2
                last = True
            if last and take == TAG_BYTES and i > 0:
                raise PayloadError(N_("the age payload ends with an empty chunk"))
            self.authenticated += len(dst)
            pos += take
            i += 1
            if last:
                if pos != stored:
                    raise PayloadError(N_("the age payload has data after its final chunk"))
                return

    def decrypt(self) -> bytearray:
        out = bytearray(self.size)
        self.decrypt_into(out)
        return out

    def release(self) -> None:
        self._view.release()


def open_file(data: bytes, identities: Iterable[Identity]) -> Opened:
    """Parse the header, unwrap the file key, verify the header MAC (in the spec's order)."""
    header = parse_header(data)
    if len(header.stanzas) > 1 and any(s.args[0] == b"scrypt" for s in header.stanzas):
        raise HeaderError(N_("an scrypt stanza must be the only one in an age header"))
    file_key = None
    for identity in identities:
        for stanza in header.stanzas:
            file_key = identity.unwrap(stanza)
            if file_key is not None:
                break
        if file_key is not None:
            break
    if file_key is None:
        raise NoMatchError(N_("no identity matches any recipient of the age file"))
    h = hmac.HMAC(_hkdf(file_key, None, b"header"), hashes.SHA256())
    h.update(memoryview(data)[: header.mac_end])
    try:
        h.verify(header.mac)  # constant-time
    except InvalidSignature as exc:
        raise HmacError(N_("the age header MAC does not verify")) from exc
    return Opened(data, header, file_key)


def decrypt(data: bytes, identities: Iterable[Identity]) -> bytearray:
    """The plaintext of an age file, decrypted into one buffer of its exact size."""
    opened = open_file(data, identities)
    try:
        return opened.decrypt()
    finally:
        opened.release()
