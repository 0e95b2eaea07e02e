"""Every constant of the formats in docs/format.md, defined once.

Changing any value here changes the on-disk or on-wire format: bump the matching version and add
a frozen fixture under tests/vectors/.
"""

from __future__ import annotations

FORMAT_VERSION = 1
"""Version carried by every stored or transmitted Velador structure (format.md §1.2)."""

# --- Domain-separation labels for Ed25519 signatures (format.md §1.3) ---------------------------
# A signature over a structure of one kind can never be replayed as a signature of another kind:
# the signed bytes are LABEL || 0x0A || canonical-JSON(body).
SIG_LABELS = {
    "card": b"velador/v1/card",
    "policy": b"velador/v1/policy",
    "share": b"velador/v1/share",
    "envelope": b"velador/v1/envelope",
    "snapshot": b"velador/v1/snapshot",
    "heartbeat": b"velador/v1/heartbeat",
    "request": b"velador/v1/request",
    "receipt": b"velador/v1/receipt",
    "status": b"velador/v1/status",
    "notice": b"velador/v1/notice",
    "custody": b"velador/v1/custody",
    "clock": b"velador/v1/clock",
    # Drills (docs/protocol.md §11): their own labels, so no drill document can pass as a real
    # request, receipt or release request, nor a real one as a drill's.
    "drill": b"velador/v1/drill",
    "drill-answer": b"velador/v1/drill-answer",
    "drill-request": b"velador/v1/drill-request",
    "drill-report": b"velador/v1/drill-report",
}

SIG_LABELS_BY_VERSION = {
    ("snapshot", 2): b"velador/v2/snapshot",
    ("snapshot", 3): b"velador/v3/snapshot",
}
"""Labels of bodies whose `v` is not 1 (format.md §1.2: a new version changes the label)."""

CARD_PREFIX = "velador:card:v1:"
"""Contact cards are this prefix followed by base64url(canonical JSON) (format.md §2)."""

FINGERPRINT_PERSON = b"velador-fp-v1"
FINGERPRINT_BYTES = 10
"""80 bits: 16 base32 characters, read aloud as four groups of four."""

ROLES = ("reporter", "outlet", "editor", "node")

# --- Identity files (format.md §3) --------------------------------------------------------------
IDENTITY_KIND = "velador-identity"
IDENTITY_SLOTS = 3
"""Every version 2 identity file has three key slots in random order, so the file never shows
whether a duress passphrase is set nor which slot is which (filler until `velador id duress`;
three so that `id duress` under the duress passphrase can keep every passphrase the captor
knows working, format.md §3). Version 1 files (two slots, normal first) are still read."""

KDF_OPSLIMIT = 3
KDF_MEMLIMIT = 128 * 1024 * 1024
"""Argon2id cost: about 0.4 s and 128 MiB per slot on a 2015 laptop."""

INSECURE_FAST_KDF_ENV = "VELADOR_INSECURE_FAST_KDF"
"""Test-only: when set to 1, new identities use libsodium's minimum Argon2id cost."""

# --- Chunking and objects (format.md §6) --------------------------------------------------------
CHUNK_MIN = 256 * 1024
CHUNK_AVG = 1024 * 1024
CHUNK_MAX = 4 * 1024 * 1024
"""FastCDC 2020 parameters. 1 MiB average keeps per-object overhead (an age header, one store
request) under 0.1% while an edit re-uploads about 1 MiB."""

CHUNKER_NAME = "fastcdc2020"
OBJECT_ID_HASH = "blake3-keyed"
OBJECT_ID_BYTES = 32

ZSTD_LEVEL = 1
"""Compression level of chunks (format.md §6.3): on CSV text level 1 keeps 32.5% of the bytes
and level 3 32.2%, at 330 vs 210 MB/s; random data costs about 0.3 ms per MiB to try."""
ZSTD_MIN_SAVING = 4096
"""A chunk is stored compressed only when that saves at least this many bytes (format.md §6.3).
It also makes the two forms tell apart by size alone (`objects.stored_packed`)."""
ZSTD_SAMPLE_FROM = 128 * 1024
ZSTD_SAMPLE_PIECES = 8
ZSTD_SAMPLE_PIECE = 8 * 1024
ZSTD_SAMPLE_SAVING = 32
"""Writers only, no reader depends on them (format.md §6.3): a chunk of ZSTD_SAMPLE_FROM bytes
or more is compressed only if 8 pieces of 8 KiB spread over it save at least 1/32 together."""
PACK_BELOW = CHUNK_MIN
PACK_MAX = CHUNK_MAX
PACK_MAX_CHUNKS = 1024
"""Packs (format.md §6.3): files shorter than PACK_BELOW (one chunk each) are stored in packs
of at most PACK_MAX bytes and PACK_MAX_CHUNKS chunks. Readers only rely on PACK_MAX (a pack's
plaintext is never longer than a chunk can be); the rest is the writer's choice."""
AGE_HEADER_MIN = 168
"""The smallest age header with one X25519 stanza (format.md §6.3)."""

MAX_INSTRUCTIONS_BYTES = 256 * 1024
MAX_MANIFEST_BYTES = 512 * 1024 * 1024
MANIFEST_ZSTD_LEVEL = 1
"""Compression level of version 3 snapshot manifests (format.md §6.4): on a 2,000-file manifest
(553 KB) level 1 keeps 21.0% in 1.5 ms, level 3 22.7%, level 19 19.4% in 210 ms."""
MANIFEST_ZSTD_WINDOW = 8 * 1024 * 1024
"""The largest zstd window a reader accepts in a compressed manifest (format.md §6.4): every
level up to 19 stays within it; level 1 uses 512 KiB at most."""
MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255

# --- Policy limits (format.md §4) ---------------------------------------------------------------
MAX_RECIPIENTS = 32
MAX_HOLDERS = 16  # SLIP-39 allows at most 16 members per group and 16 groups
SLIP39_ITERATION_EXPONENT = 1
RELEASE_SECRET_BYTES = 32
