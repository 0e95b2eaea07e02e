"""Canonical bytes for everything Velador signs or hashes (docs/format.md §1.1).

Canonical JSON: UTF-8, keys sorted, no insignificant white space, no floats (integers only), no
NaN. Binary values travel as unpadded base64url strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from .errors import N_, FormatError


def canonical_json(obj: Any) -> bytes:
    """Serialize `obj` so that equal values always give equal bytes (for signatures and hashes)."""
    # Encoded first: the encoder refuses cycles (ValueError) and overly deep nesting
    # (RecursionError), so the float check below only ever walks a finite tree.
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    _reject_floats(obj)
    return text.encode()


_PLAIN = frozenset({str, int, bool, type(None)})
"""Exact types that are certainly not floats (a subclass of one of them takes the slow path)."""


def _reject_floats(obj: Any) -> None:
    # Floats have several textual forms; a signature over one of them would not survive a
    # re-encoding by another implementation. The formats use integers only.
    # Iterative, with exact-type checks first: this runs on every document signed or hashed,
    # several times per heartbeat.
    stack = [obj]
    pop, extend = stack.pop, stack.extend
    while stack:
        value = pop()
        kind = type(value)
        if kind in _PLAIN:
            continue
        if kind is dict:
            extend(value.values())
        elif kind is list or kind is tuple:
            extend(value)
        elif isinstance(value, float):
            raise TypeError("floats are not allowed in canonical JSON")
        elif isinstance(value, dict):
            extend(value.values())
        elif isinstance(value, (list, tuple)):
            extend(value)
        # Any other type: json.dumps above already accepted or refused it.


def parse_json(data: bytes | str, what: str, max_bytes: int = 16 * 1024 * 1024) -> Any:
    """Parse untrusted JSON, turning every failure into a FormatError naming `what`."""
    if len(data) > max_bytes:
        raise FormatError(
            N_("%(what)s is too large (%(count)s bytes, limit %(max_bytes)s)"),
            what=what,
            count=len(data),
            max_bytes=max_bytes,
        )
    try:
        return json.loads(
            data, parse_float=_no_float, parse_constant=_no_float, object_pairs_hook=_no_duplicates
        )
    except _DuplicateKey as exc:
        raise FormatError(
            N_("%(what)s has two members named %(name)r"), what=what, name=exc.name[:40]
        ) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FormatError(N_("%(what)s is not valid JSON"), what=what) from exc


def _no_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text[:20]!r}")


class _DuplicateKey(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two members of one name would let two readers see two different documents under one
    # signature (one keeps the first, another the last): refuse them (format.md §1.1).
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise _DuplicateKey(name)
        out[name] = value
    return out


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: Any, what: str, length: int | None = None) -> bytes:
    """Decode unpadded base64url from untrusted input; check the decoded length if given."""
    if not isinstance(text, str):
        raise FormatError(N_("%(what)s must be a base64url string"), what=what)
    if "=" in text or not text.isascii():
        raise FormatError(N_("%(what)s is not unpadded base64url"), what=what)
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise FormatError(N_("%(what)s is not valid base64url"), what=what) from exc
    if b64e(data) != text:
        # Reject non-canonical encodings so one value has exactly one textual form.
        raise FormatError(N_("%(what)s is not canonical base64url"), what=what)
    if length is not None and len(data) != length:
        raise FormatError(
            N_("%(what)s must be %(length)s bytes, got %(count)s"),
            what=what,
            length=length,
            count=len(data),
        )
    return data


def doc_hash(obj: Any) -> str:
    """Hex BLAKE2b-256 of the canonical JSON of `obj`: the id of policies and documents."""
    return hashlib.blake2b(canonical_json(obj), digest_size=32).hexdigest()


def require(obj: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """Fetch `obj[key]` from parsed untrusted JSON, checking its type."""
    if not isinstance(obj, dict):
        raise FormatError(N_("%(what)s must be a JSON object"), what=what)
    if key not in obj:
        raise FormatError(N_("%(what)s lacks the field %(key)r"), what=what, key=key)
    value = obj[key]
    # bool is a subclass of int; a boolean where a number belongs is a format error.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise FormatError(N_("%(what)s: field %(key)r has the wrong type"), what=what, key=key)
    if not isinstance(value, kind):
        raise FormatError(N_("%(what)s: field %(key)r has the wrong type"), what=what, key=key)
    return value
