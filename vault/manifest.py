"""Snapshot manifests and the snapshot chain (docs/format.md §6.4, §6.5).

A snapshot object is an age file (to the release recipient) whose plaintext is a reporter-signed
"snapshot" document. Its id is the BLAKE2b-256 of the stored ciphertext, and each manifest names
its parent's id, so the snapshots of a case form a hash chain that recipients check end to end.

Manifests are hostile input to the recipient (a stolen reporter key, a bug, a malicious store
cannot forge the signature, but recovery must hold even against the reporter's own mistakes):
`parse_manifest` checks every path, size and type before anything is written.
"""

from __future__ import annotations

import hashlib
import stat
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import zstandard
from nacl.signing import SigningKey
from pyrage import x25519

from .constants import (
    CHUNK_MAX,
    CHUNKER_NAME,
    MANIFEST_ZSTD_LEVEL,
    MANIFEST_ZSTD_WINDOW,
    MAX_COMPONENT_BYTES,
    MAX_INSTRUCTIONS_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_PATH_BYTES,
    OBJECT_ID_HASH,
)
from .encoding import b64d, b64e, canonical_json, parse_json, require
from .errors import N_, FormatError, UnsafePathError
from .objects import check_object_id, decrypt, encrypt
from .signing import sign_document, verify_document

MAX_FILE_SIZE = 2**50  # 1 PiB: anything larger is a lie
MAX_ENTRIES = 10_000_000
MAX_LABEL_BYTES = 1024
"""The reporter's name for the case, in UTF-8 (format.md §6.4)."""

_HEX = set("0123456789abcdef")
_BODY_FIELDS = {
    "v",
    "case_id",
    "policy_hash",
    "seq",
    "created",
    "parent",
    "label",
    "chunk_key",
    "chunker",
    "instructions",
    "roots",
    "entries",
    "packs",
}
_CHUNKER_FIELDS = {"alg", "seed", "hash"}
_DIR_FIELDS = {"path", "type", "mode", "mtime"}
_FILE_FIELDS = _DIR_FIELDS | {"size", "chunks"}


@dataclass(frozen=True)
class Entry:
    path: str  # relative POSIX path, validated by safe_path
    type: str  # "file" | "dir"
    mode: int  # permission bits only
    mtime: int
    size: int = 0
    chunks: tuple[tuple[str, int], ...] = ()  # (object id, plaintext length)

    def to_json(
        self,
        zstd: frozenset[str] = frozenset(),
        placed: Mapping[str, tuple[str, int]] | None = None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "mode": self.mode,
            "mtime": self.mtime,
        }
        if self.type == "file":
            out["size"] = self.size
            out["chunks"] = [_ref(oid, n, zstd, placed) for oid, n in self.chunks]
        return out


def _ref(
    oid: str, n: int, zstd: frozenset[str], placed: Mapping[str, tuple[str, int]] | None
) -> list[Any]:
    """One chunk reference (format.md §6.4): in a pack, compressed, or as it is."""
    where = placed.get(oid) if placed else None
    if where is not None:
        return [oid, n, "pack", where[0], where[1]]
    return [oid, n, "zstd"] if oid in zstd else [oid, n]


@dataclass(frozen=True)
class Manifest:
    case_id: str
    policy_hash: str
    seq: int
    created: int
    parent: str | None
    label: str
    chunk_key: bytes
    chunker_seed: int
    entries: tuple[Entry, ...]
    instructions: str | None = None
    roots: tuple[str, ...] = field(default=())
    zstd: frozenset[str] = field(default=frozenset())
    """Object ids (chunks and packs) whose stored form is a zstd frame (format.md §6.3, §6.4)."""
    packs: Mapping[str, int] = field(default_factory=dict)
    """Pack id -> length of the pack's plaintext (format.md §6.3, "Packs")."""
    placed: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    """Object id of a chunk stored in a pack -> (pack id, offset in the pack's plaintext)."""

    @property
    def version(self) -> int:
        """3 when a chunk is in a pack, else 2 when one is compressed, else 1: a deposit stays
        readable by the oldest reader that can read it (format.md §6.4, §11)."""
        if self.placed:
            return 3
        return 2 if self.zstd - set(self.packs) else 1

    def body(self) -> dict[str, Any]:
        return {
            "v": self.version,
            "case_id": self.case_id,
            "policy_hash": self.policy_hash,
            "seq": self.seq,
            "created": self.created,
            "parent": self.parent,
            "label": self.label,
            "chunk_key": b64e(self.chunk_key),
            "chunker": {"alg": CHUNKER_NAME, "seed": self.chunker_seed, "hash": OBJECT_ID_HASH},
            "instructions": self.instructions,
            "roots": list(self.roots),
            "entries": [e.to_json(self.zstd, self.placed) for e in self.entries],
        } | self._packs_json()

    def _packs_json(self) -> dict[str, Any]:
        if not self.placed:
            return {}
        used = {pid for pid, _ in self.placed.values()}
        return {
            "packs": {
                pid: [n, "zstd"] if pid in self.zstd else [n]
                for pid, n in sorted(self.packs.items())
                if pid in used
            }
        }

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)

    def object_ids(self) -> set[str]:
        """The stored objects this manifest needs: chunk objects, and packs for packed chunks."""
        placed = self.placed
        return {
            placed[oid][0] if oid in placed else oid for e in self.entries for oid, _ in e.chunks
        }


def safe_path(path: Any) -> str:
    """Validate a manifest path: relative, normalized, no '..', no NUL, bounded, NFC."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(N_("manifest has an empty or non-text path"))
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafePathError(N_("manifest path is too long"))
    if "\x00" in path or "\\" in path:
        raise UnsafePathError(
            N_("manifest path %(path)r contains a forbidden character"), path=path[:80]
        )
    if path.startswith("/") or PurePosixPath(path).is_absolute():
        raise UnsafePathError(N_("manifest path %(path)r is absolute"), path=path[:80])
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(
                N_("manifest path %(path)r is not a plain relative path"), path=path[:80]
            )
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(N_("manifest path has a component that is too long"))
        if any(ord(ch) < 32 for ch in part):
            raise UnsafePathError(
                N_("manifest path %(path)r contains control characters"), path=path[:80]
            )
    if unicodedata.normalize("NFC", path) != path:
        raise UnsafePathError(N_("manifest path %(path)r is not NFC-normalized"), path=path[:80])
    return path


def _parse_entry(
    raw: Any, version: int = 1, flags: dict[str, tuple[Any, ...]] | None = None
) -> Entry:
    path = safe_path(require(raw, "path", str, "manifest entry"))
    kind = require(raw, "type", str, "manifest entry")
    mode = require(raw, "mode", int, "manifest entry")
    if not 0 <= mode <= 0o777:
        raise FormatError(N_("manifest entry %(path)r has an invalid mode"), path=path[:80])
    mtime = require(raw, "mtime", int, "manifest entry")
    if kind == "dir":
        if set(raw) - _DIR_FIELDS:
            raise FormatError(N_("manifest directory entry has unexpected fields"))
        return Entry(path, "dir", mode, mtime)
    if kind != "file":
        # Symlinks, devices, FIFOs and sockets are never deposited and never restored.
        raise UnsafePathError(
            N_("manifest entry %(path)r has the unsupported type %(kind)r"),
            path=path[:80],
            kind=kind[:20],
        )
    if set(raw) - _FILE_FIELDS:
        raise FormatError(N_("manifest file entry %(path)r has unexpected fields"), path=path[:80])
    size = require(raw, "size", int, "manifest entry")
    if not 0 <= size <= MAX_FILE_SIZE:
        raise FormatError(N_("manifest entry %(path)r declares an impossible size"), path=path[:80])
    chunks = []
    total = 0
    for c in require(raw, "chunks", list, "manifest entry"):
        if not (isinstance(c, list) and _ref_shape(c, version)):
            raise FormatError(N_("manifest chunk reference is malformed"))
        if not 1 <= c[1] <= CHUNK_MAX:
            raise FormatError(N_("manifest chunk has an impossible length"))
        oid = check_object_id(c[0])
        tail = tuple(c[2:])
        if len(c) == 5:
            check_object_id(c[3])
        # One chunk has one place and one stored form: two references may not disagree.
        if flags is not None and flags.setdefault(oid, tail) != tail:
            raise FormatError(
                N_("manifest names object %(oid)s in two different ways"), oid=oid[:12]
            )
        chunks.append((oid, c[1]))
        total += c[1]
    if total != size:
        raise FormatError(
            N_("manifest entry %(path)r: chunk lengths do not add up to its size"), path=path[:80]
        )
    return Entry(path, "file", mode, mtime, size, tuple(chunks))


def _ref_shape(c: list[Any], version: int) -> bool:
    """[oid, length]; [oid, length, "zstd"] from version 2; [oid, length, "pack", pack id,
    offset] from version 3 (format.md §6.4)."""
    if not (len(c) >= 2 and isinstance(c[1], int) and not isinstance(c[1], bool)):
        return False
    if len(c) == 2:
        return True
    if len(c) == 3:
        return version >= 2 and c[2] == "zstd"
    return (
        len(c) == 5
        and version >= 3
        and c[2] == "pack"
        and isinstance(c[4], int)
        and not isinstance(c[4], bool)
    )


def _parse_packs(
    body: dict[str, Any], version: int, flags: dict[str, tuple[Any, ...]]
) -> tuple[dict[str, int], set[str]]:
    """The `packs` member and the pack references (format.md §6.3 "Packs", §6.4): every
    reference lies inside a listed pack, every listed pack is named, one form per object."""
    if version < 3:
        if "packs" in body:
            raise FormatError(N_("manifest has an unknown field %(extra)r"), extra="packs")
        return {}, set()
    raw = require(body, "packs", dict, "manifest")
    packs: dict[str, int] = {}
    zstd: set[str] = set()
    for pid, value in raw.items():
        check_object_id(pid)
        if not (
            isinstance(value, list)
            and len(value) in (1, 2)
            and isinstance(value[0], int)
            and not isinstance(value[0], bool)
            and 1 <= value[0] <= CHUNK_MAX
            and (len(value) == 1 or value[1] == "zstd")
        ):
            raise FormatError(N_("manifest pack %(pid)s is malformed"), pid=pid[:12])
        packs[pid] = value[0]
        if len(value) == 2:
            zstd.add(pid)
        # A pack that is also named as a chunk object must have the same stored form.
        plain = flags.get(pid)
        if plain is not None and len(plain) < 2 and (plain == ("zstd",)) != (pid in zstd):
            raise FormatError(
                N_("manifest names object %(oid)s in two different ways"), oid=pid[:12]
            )
    return packs, zstd


def _place_chunks(
    entries: tuple[Entry, ...],
    flags: dict[str, tuple[Any, ...]],
    packs: dict[str, int],
) -> dict[str, tuple[str, int]]:
    placed: dict[str, tuple[str, int]] = {}
    lengths = {oid: n for e in entries for oid, n in e.chunks}
    for oid, tail in flags.items():
        if len(tail) != 3:
            continue
        pid, offset = tail[1], tail[2]
        if pid not in packs:
            raise FormatError(
                N_("manifest places object %(oid)s in a pack it does not list"), oid=oid[:12]
            )
        if not 0 <= offset <= packs[pid] - lengths[oid]:
            raise FormatError(N_("manifest places object %(oid)s outside its pack"), oid=oid[:12])
        placed[oid] = (pid, offset)
    unused = set(packs) - {pid for pid, _ in placed.values()}
    if unused:
        raise FormatError(
            N_("manifest lists pack %(pid)s that no chunk is in"), pid=min(unused)[:12]
        )
    return placed


MANIFEST_VERSIONS = (1, 2, 3)
"""Version 2 adds the zstd flag of a chunk reference, version 3 packs (format.md §6.4, §11)."""


def parse_manifest(body: Any) -> Manifest:
    version = require(body, "v", int, "manifest")
    if version not in MANIFEST_VERSIONS:
        raise FormatError(N_("unsupported manifest version"), hint=N_("upgrade velador"))
    extra = sorted(set(body) - _BODY_FIELDS)
    if extra:
        raise FormatError(N_("manifest has an unknown field %(extra)r"), extra=extra[0][:40])
    chunker = require(body, "chunker", dict, "manifest")
    if chunker.get("alg") != CHUNKER_NAME or chunker.get("hash") != OBJECT_ID_HASH:
        raise FormatError(N_("manifest uses an unknown chunker or hash"))
    if set(chunker) - _CHUNKER_FIELDS:
        raise FormatError(N_("manifest chunker has unexpected fields"))
    seed = require(chunker, "seed", int, "manifest chunker")
    if not 0 <= seed < 2**63:
        raise FormatError(N_("manifest chunker seed is out of range (0 to 2^63 - 1)"))
    raw_entries = require(body, "entries", list, "manifest")
    if len(raw_entries) > MAX_ENTRIES:
        raise FormatError(N_("manifest has too many entries"))
    flags: dict[str, tuple[Any, ...]] = {}
    entries = tuple(_parse_entry(e, version, flags) for e in raw_entries)
    packs, packed_packs = _parse_packs(body, version, flags)
    placed = _place_chunks(entries, flags, packs)
    seen: set[str] = set()
    kinds: dict[str, str] = {}
    for e in entries:
        key = unicodedata.normalize("NFC", e.path).casefold()
        if e.path in seen or key in seen:
            raise UnsafePathError(N_("manifest lists the path %(path)r twice"), path=e.path[:80])
        seen.add(e.path)
        seen.add(key)
        kinds[e.path] = e.type
    for e in entries:  # a file may not be the parent of another entry
        parent = e.path.rpartition("/")[0]
        while parent:
            if kinds.get(parent) == "file":
                raise UnsafePathError(
                    N_("manifest path %(path)r lies under a file"), path=e.path[:80]
                )
            parent = parent.rpartition("/")[0]
    instructions = body.get("instructions")
    if instructions is not None and (
        not isinstance(instructions, str)
        or len(instructions.encode("utf-8", "surrogatepass")) > MAX_INSTRUCTIONS_BYTES
        or any("\ud800" <= ch <= "\udfff" for ch in instructions)
    ):
        raise FormatError(N_("manifest instructions are invalid or too long"))
    parent = body.get("parent")
    if parent is not None and not (
        isinstance(parent, str) and len(parent) == 64 and set(parent) <= _HEX
    ):
        raise FormatError(N_("manifest parent id is invalid (not 64 lowercase hex characters)"))
    seq = require(body, "seq", int, "manifest")
    if seq < 1 or (seq == 1) != (parent is None):
        raise FormatError(N_("manifest sequence and parent disagree"))
    roots = tuple(safe_path(r) for r in require(body, "roots", list, "manifest"))
    for r in roots:
        if "/" in r:
            raise FormatError(
                N_("manifest root %(root)r is not a single top-level name"), root=r[:80]
            )
    if len(set(roots)) != len(roots):
        raise FormatError(N_("manifest lists a root twice"))
    for e in entries:
        if e.path.split("/", 1)[0] not in roots:
            # Recovery replaces whole roots (format.md §9.2): an entry outside every root would
            # survive the next deposit of its name and mix two versions of one folder.
            raise FormatError(
                N_("manifest entry %(path)r lies under none of its roots"), path=e.path[:80]
            )
    label = require(body, "label", str, "manifest")
    if len(label.encode("utf-8", "surrogatepass")) > MAX_LABEL_BYTES:
        raise FormatError(
            N_("manifest label is longer than %(limit)s bytes"),
            limit=MAX_LABEL_BYTES,
        )
    return Manifest(
        case_id=require(body, "case_id", str, "manifest"),
        policy_hash=require(body, "policy_hash", str, "manifest"),
        seq=seq,
        created=require(body, "created", int, "manifest"),
        parent=parent,
        label=label,
        chunk_key=b64d(require(body, "chunk_key", str, "manifest"), "chunk key", 32),
        chunker_seed=seed,
        entries=entries,
        instructions=instructions,
        roots=roots,
        zstd=frozenset(oid for oid, tail in flags.items() if tail == ("zstd",)) | packed_packs,
        packs=packs,
        placed=placed,
    )


def snapshot_id(ciphertext: bytes) -> str:
    return hashlib.blake2b(ciphertext, digest_size=32).hexdigest()


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
"""The first 4 bytes of a zstd frame (RFC 8878); no JSON text can start with 0x28 '('."""


def seal_snapshot(manifest: Manifest, key: SigningKey, recipient: str) -> tuple[str, bytes]:
    """Sign the manifest, encrypt it to the release recipient; return (snapshot id, object).

    A version 3 manifest is compressed first (format.md §6.4): it is written to every store on
    every deposit, and 2,000 files make 550 KB of JSON that zstd brings to a fifth. Versions 1
    and 2 never are, so the readers that know only them keep reading what they could.
    """
    body = manifest.body()
    plain = canonical_json(sign_document("snapshot", body, key))
    if body["v"] >= 3:
        cctx = zstandard.ZstdCompressor(level=MANIFEST_ZSTD_LEVEL, write_content_size=True)
        plain = cctx.compress(plain)
    ciphertext = encrypt(plain, recipient)
    return snapshot_id(ciphertext), ciphertext


def unpack_manifest(payload: bytes, what: str) -> tuple[bytes, bool]:
    """The document bytes of a snapshot's age payload, and whether it was a zstd frame.

    Unlike a chunk, whose bytes may be anything (a deposited .zst file), a snapshot's payload is
    either JSON, which never starts with the zstd magic, or one frame (format.md §6.4): the first
    4 bytes tell them apart. The frame must declare its size, within MAX_MANIFEST_BYTES (the limit
    of an uncompressed document), ask for a window within MANIFEST_ZSTD_WINDOW, and be alone; zstd
    decodes into a buffer of the declared size and refuses to go past it, so a hostile store or
    a bomb can never make the reader allocate more than an uncompressed manifest could.
    """
    if payload[:4] != ZSTD_MAGIC:
        return payload, False
    bad = FormatError(N_("%(what)s is not a valid zstd frame"), what=what)
    try:
        size = zstandard.frame_content_size(payload)
        window = zstandard.get_frame_parameters(payload).window_size
    except zstandard.ZstdError:
        raise bad from None
    if size < 1 or window > MANIFEST_ZSTD_WINDOW:
        raise bad  # -1: the frame does not declare its content size; 0: no document
    if size > MAX_MANIFEST_BYTES:
        raise FormatError(
            N_("%(what)s is too large (%(count)s bytes, limit %(max_bytes)s)"),
            what="snapshot manifest",
            count=size,
            max_bytes=MAX_MANIFEST_BYTES,
        )
    dctx = zstandard.ZstdDecompressor(max_window_size=MANIFEST_ZSTD_WINDOW)
    try:
        plain = dctx.decompress(payload, allow_extra_data=False)
    except zstandard.ZstdError:
        raise bad from None
    if len(plain) != size:
        raise bad
    return plain, True


def open_snapshot_body(
    ciphertext: bytes,
    identities: list[x25519.Identity],
    reporter_pk: bytes,
    expected_id: str,
    case_id: str,
) -> dict[str, Any]:
    """Check the id, decrypt, verify the reporter's signature; return the signed body.

    A failure here concerns this copy of the object (damaged, substituted, another case's), so a
    reader may try another store. What the body says is checked by `read_signed_manifest`.
    """
    if len(ciphertext) > MAX_MANIFEST_BYTES:
        raise FormatError(N_("snapshot object is too large"))
    if snapshot_id(ciphertext) != expected_id:
        raise FormatError(
            N_("snapshot %(snapshot)s does not match its id"), snapshot=expected_id[:12]
        )
    what = f"snapshot {expected_id[:12]}"
    plain, packed = unpack_manifest(decrypt(ciphertext, identities, what), what)
    doc = parse_json(plain, "snapshot manifest", MAX_MANIFEST_BYTES)
    body = verify_document(doc, "snapshot", reporter_pk, what="snapshot manifest")
    version = body.get("v") if isinstance(body, dict) else None
    if packed and not (type(version) is int and version >= 3):
        # No writer compressed a version 1 or 2 manifest, and their readers would refuse it:
        # every reader must agree on which snapshots a case has (format.md §6.4).
        raise FormatError(
            N_("%(what)s is compressed, which only a manifest of version 3 may be"), what=what
        )
    if require(body, "case_id", str, "manifest") != case_id:
        raise FormatError(
            N_("snapshot belongs to another case"),
            hint=N_("the store holds another case's data under this case; check the store URL"),
        )
    return body  # type: ignore[no-any-return]


def read_signed_manifest(body: dict[str, Any], sid: str) -> Manifest:
    """Parse a body whose signature verified, naming the snapshot in any refusal.

    Every replica of a snapshot id holds the same bytes, so a signed body that breaks the rules
    is not a damaged copy to skip: the reporter's key signed it, and the reader must say so.
    """
    try:
        return parse_manifest(body)
    except FormatError as exc:
        seq = body.get("seq")
        numbered = isinstance(seq, int) and not isinstance(seq, bool)
        unsafe = isinstance(exc, UnsafePathError)
        raise type(exc)(
            _SIGNED_BAD[(numbered, unsafe)],
            hint=N_(
                "it carries the reporter's valid signature, so treat the reporter's key as "
                "possibly compromised; nothing was written"
            ),
            seq=seq if numbered else 0,
            sid=sid[:12],
            detail=exc,
        ) from exc


_SIGNED_BAD = {
    (True, True): N_("snapshot %(seq)s (%(sid)s) names an unsafe path: %(detail)s; refusing"),
    (True, False): N_("snapshot %(seq)s (%(sid)s) is malformed: %(detail)s; refusing"),
    (False, True): N_("a snapshot (%(sid)s) names an unsafe path: %(detail)s; refusing"),
    (False, False): N_("a snapshot (%(sid)s) is malformed: %(detail)s; refusing"),
}


def open_snapshot(
    ciphertext: bytes,
    identities: list[x25519.Identity],
    reporter_pk: bytes,
    expected_id: str,
    case_id: str,
) -> Manifest:
    body = open_snapshot_body(ciphertext, identities, reporter_pk, expected_id, case_id)
    return read_signed_manifest(body, expected_id)


def entry_mode(st_mode: int) -> int:
    return stat.S_IMODE(st_mode) & 0o777
