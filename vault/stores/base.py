"""The object-store interface and its key rules (docs/format.md §7 Stores).

A store maps keys to immutable byte strings. Every backend (``file://``, ``s3://``) passes the same
conformance suite (tests/unit/test_stores.py), in the spirit of restic's backend tests.

Keys are made by Velador's own code, never by users or remote parties, so a malformed key is a
programmer error and raises ``ValueError``. A key is relative and ``/``-separated; each component is
made of ``[a-z0-9._-]``, is not ``.`` or ``..``, and does not look like a store temp file
(``.<name>.<12 hex>.tmp``, the name ``vault.fsutil.atomic_write`` gives a write in progress). That
last rule keeps ``list()`` identical on every backend: the file store hides temp files, so no real
key may look like one.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MAX_KEY_LENGTH = 512
"""Longest key, in characters; S3 allows 1024 bytes, and a store URL prefix needs some room."""

_COMPONENT = re.compile(r"[a-z0-9._-]+")
TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")
"""A file name that a write in progress uses in the file store (see vault.fsutil.atomic_write)."""


@runtime_checkable
class Store(Protocol):
    """A place that keeps objects by key. Implementations must be safe to share between threads."""

    url: str
    """The URL the store was opened with, without secrets (see ``describe``)."""

    check_by_listing: bool
    """Whether a deposit should learn what the store holds from one ``list_sizes`` rather than
    a ``has`` per chunk (S3: a request per 1,000 keys instead of one per chunk; format.md §6.6)."""

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Store ``data`` under ``key``: atomic, durable before returning, idempotent."""
        ...

    def sync(self) -> None:
        """Make every put made with durable=False (by any process) durable."""
        ...

    def stage(self, key: str, data: bytes) -> str:
        """Write ``data`` for ``key`` without making it visible or durable yet; return a token.

        Any process may stage; the tokens travel (as plain strings) to the one that calls
        ``commit``. Until then ``has``/``get``/``list`` do not see the object. S3: a plain PUT,
        durable and visible at once (the token is empty), so two stagings of one key leave the
        last one; the caller stages only keys it did not find, and evens out replicas of a chunk
        it staged twice in one run (vault.deposit).
        """
        ...

    def commit(self, staged: list[tuple[str, str]]) -> None:
        """Make staged ``(key, token)`` objects durable, then visible, then durable by name.

        File store: a key that already exists keeps its bytes (objects are immutable; the first
        copy wins) and the staged copy is dropped; one ``syncfs`` before and one after the
        renames of the whole batch, instead of an fsync per object (format.md §1.5).
        """
        ...

    def put_file(self, key: str, path: pathlib.Path) -> None:
        """Like ``put``, streaming from a local file (S3: multipart above 8 MiB)."""
        ...

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes; ``NotFoundError`` if there is no such object.

        With ``max_bytes``, a larger object is refused (``StoreError``) before it is read: a
        hostile store must not make a reader allocate what it likes."""
        ...

    def get_to_file(self, key: str, path: pathlib.Path) -> None:
        """Stream the object into ``path``, which appears whole or not at all."""
        ...

    def has(self, key: str) -> bool:
        """Whether the object exists."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or ``None`` if it does not exist."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (``""`` or ending in ``/``), sorted bytewise."""
        ...

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size in bytes)`` of the objects under ``prefix``, as ``list`` orders them."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a well-formed store key, else raise ``ValueError``."""
    if not isinstance(key, str):
        raise TypeError(f"store key must be str, not {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"store key must be 1..{MAX_KEY_LENGTH} characters: {key[:80]!r}")
    for part in key.split("/"):
        # An empty part means a leading '/', a trailing '/' or '//'.
        if not _COMPONENT.fullmatch(part) or part in (".", ".."):
            raise ValueError(f"malformed store key: {key!r}")
        if TEMP_NAME.fullmatch(part):
            raise ValueError(f"store key looks like a temp file: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is ``""`` or a key followed by ``/``, else raise ``ValueError``."""
    if prefix == "":
        return prefix
    if not isinstance(prefix, str) or not prefix.endswith("/"):
        raise ValueError(f"store list prefix must be empty or end with '/': {prefix!r}")
    validate_key(prefix[:-1])
    return prefix


def is_listable_name(name: str) -> bool:
    """Whether a name found in a store is a key component that ``list()`` should report."""
    return (
        bool(_COMPONENT.fullmatch(name))
        and name not in (".", "..")
        and not TEMP_NAME.fullmatch(name)
    )


_SAFE_QUERY = ("endpoint", "region")
"""URL options that carry no secrets and are kept by ``describe``; the endpoint is cleaned too."""


def describe(url: str) -> str:
    """``url`` without user info, secrets in the query, or fragment: safe for logs and errors.

    A plain filesystem path is shown as the ``file://`` URL it opens. Only the ``endpoint`` and
    ``region`` options survive, and the endpoint itself loses any user info, query and fragment.
    """
    try:
        if "://" not in url and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", url):
            return pathlib.Path(url).absolute().as_uri() if url else "<empty store URL>"
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        query = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "endpoint":
                ep = urlsplit(value)
                value = urlunsplit((ep.scheme, ep.netloc.rpartition("@")[2], ep.path, "", ""))
            if name in _SAFE_QUERY:
                query.append((name, value))
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=":/"), ""))
    except ValueError:  # urlsplit refuses some malformed netlocs, e.g. an unclosed '['
        return "<unparseable store URL>"
