"""Search bytes for marker strings, raw and in the encodings a careless program would use."""

from __future__ import annotations

import base64
import bz2
import contextlib
import gzip
import json
import lzma
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus


@dataclass(frozen=True)
class Hit:
    kind: str  # which marker (content, filename, ...)
    category: str  # where (node-data, mail, ...)
    label: str  # the file or stream
    form: str  # how it was encoded

    def __str__(self) -> str:
        return f"{self.kind} in {self.category}: {self.label} ({self.form})"


def forms(marker: str) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(case-insensitive needles, already lowercased; exact needles).

    Case-insensitive: UTF-8 of the NFC and NFD forms, UTF-16 (LE/BE), URL-encoding, JSON's
    \\u escapes, hex. Exact: base64 and urlsafe base64 at each of the three alignments a marker
    can have inside a longer encoded buffer (the encoding of the marker minus its first 0-2
    bytes, cut to whole 3-byte groups: the random tail keeps this free of false hits)."""
    loose: dict[str, bytes] = {}
    exact: dict[str, bytes] = {}
    for norm in ("NFC", "NFD"):
        s = unicodedata.normalize(norm, marker)
        if norm == "NFD" and s == marker:
            continue
        tag = "" if s == marker else f"{norm} "
        raw = s.encode("utf-8")
        loose[f"{tag}utf-8"] = raw.lower()
        loose[f"{tag}utf-16-le"] = s.encode("utf-16-le").lower()
        loose[f"{tag}utf-16-be"] = s.encode("utf-16-be").lower()
        loose[f"{tag}url-encoded"] = quote(s).encode().lower()
        loose[f"{tag}url-encoded+"] = quote_plus(s, safe="").encode().lower()
        loose[f"{tag}json-ascii"] = json.dumps(s)[1:-1].encode().lower()
        loose[f"{tag}hex"] = raw.hex().encode()
        loose[f"{tag}lowercase"] = s.lower().encode("utf-8")
        loose[f"{tag}uppercase"] = s.upper().encode("utf-8").lower()  # Ñ stays Ñ in bytes.lower
        for shift in range(3):
            part = raw[shift:]
            part = part[: len(part) // 3 * 3]
            exact[f"{tag}base64@{shift}"] = base64.b64encode(part)
            exact[f"{tag}base64url@{shift}"] = base64.urlsafe_b64encode(part)
    return {k: v for k, v in loose.items() if v}, exact


def category_of(rel: Path) -> str | None:
    """The scan category of a path relative to the life's root; None for the allowed trees."""
    parts = rel.parts
    top = parts[0]
    if top in ("src", "out", "bin"):  # bin: the test's notify-send stub
        return None  # the reporter's own source tree and the recovery output: allowed
    if top == "homes" and len(parts) > 1:
        return "user-home" if parts[1] == "user" else f"home-{parts[1]}"
    return {
        "nodes": "node-data",
        "captured": "node-output",
        "stores": "store-folder",
        "tmp": "temp",
        "fd": "cli-fd",
    }.get(top, "other")


def decompressed(data: bytes) -> list[tuple[str, bytes]]:
    """Whole buffers in a standard compressed format (gzip, zlib, bz2, xz): a marker compressed
    but not encrypted is still a leak. Bounded to 256 MiB of output."""
    out = []
    tries = (
        (b"\x1f\x8b", "gzip", gzip.decompress),
        (b"BZh", "bz2", bz2.decompress),
        (b"\xfd7zXZ", "xz", lzma.decompress),
    )
    for magic, name, fn in tries:
        if data.startswith(magic):
            with contextlib.suppress(Exception):
                out.append((name, fn(data)[: 256 << 20]))
    if data[:1] == b"\x78" and len(data) > 2 and int.from_bytes(data[:2], "big") % 31 == 0:
        with contextlib.suppress(zlib.error):
            out.append(("zlib", zlib.decompressobj().decompress(data, 256 << 20)))
    return out


class Scanner:
    def __init__(self, marks: dict[str, str]) -> None:
        self.needles = {kind: forms(m) for kind, m in marks.items()}
        self.files = 0
        self.bytes = 0
        self.streams = 0

    def search(self, category: str, label: str, data: bytes, count: bool = True) -> list[Hit]:
        if count:
            self.bytes += len(data)
        hits = []
        for how, plain in decompressed(data):
            hits += self._search(category, f"{label} [{how}]", plain)
        return hits + self._search(category, label, data)

    def _search(self, category: str, label: str, data: bytes) -> list[Hit]:
        low = data.lower()
        hits = []
        for kind, (loose, exact) in self.needles.items():
            form = next((f for f, n in loose.items() if n in low), None)
            if form is None:
                form = next((f for f, n in exact.items() if n in data), None)
            if form is not None:
                hits.append(Hit(kind, category, label, form))
        return hits

    def tree(self, root: Path, category_of) -> tuple[list[Hit], set[Path]]:  # type: ignore[no-untyped-def]
        """Every file and every path name under root (names are bytes Velador wrote too)."""
        hits: list[Hit] = []
        skipped: set[Path] = set()
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            category = category_of(rel)
            if category is None:
                skipped.add(path)
                continue
            name = str(rel).encode("utf-8", "surrogateescape")
            hits += self.search(category, f"{rel} [path name]", name, count=False)
            if path.is_file() and not path.is_symlink():
                self.files += 1
                hits += self.search(category, str(rel), path.read_bytes())
        return hits, skipped
