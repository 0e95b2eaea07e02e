"""Seeded generator of the Velador test vectors (docs/format.md §10).

    .venv/bin/python tests/vectors/generate.py            # rewrite tests/vectors/<kind>/*.txt
    .venv/bin/python tests/vectors/generate.py --out DIR  # write elsewhere (the runner compares)

Every key, the release secret, the case id and every time stamp come from fixed labels, so the
output is the same on every run. Two primitives are randomized in production and are made
deterministic here, for this program only:

- SLIP-39 (`shamir-mnemonic`) draws its identifier and random shares from
  `shamir_mnemonic.shamir.RANDOM_BYTES`, the hook that library provides for its own vectors; it
  is replaced by a seeded stream.
- X25519 sealed boxes take a fresh ephemeral key from libsodium. Here `crypto_box_seal` is
  replaced by the same construction with a seeded ephemeral key: `epk || crypto_box(m, nonce,
  pk, esk)` with `nonce = BLAKE2b-192(epk || pk)`, which libsodium's `crypto_box_seal_open`
  opens like any other sealed box (the runner opens them with the real function).

If a future library makes either hook impossible, generate the vectors once without it and
freeze them: randomized bytes will then differ from run to run, but every vector still passes.

A vector file is a few `key: value` header lines, a blank line, then the bytes (the body ends
before one final newline). `expect:` names the outcome: `success` or the vault.errors class the
parser must raise (`format error`, `unsafe path`, `authentication error`, `share error`,
`policy error`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import dataclasses
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.bindings
import shamir_mnemonic.shamir
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from vault.cards import Card, make_card
from vault.constants import CARD_PREFIX, CHUNK_MAX, CHUNKER_NAME, OBJECT_ID_HASH
from vault.encoding import b64e, canonical_json
from vault.envelope import make_envelopes
from vault.manifest import Entry, Manifest
from vault.objects import object_id
from vault.policy import Holder, Policy, Switch, sign_policy
from vault.shares import ShareSpec, age_identity_str, age_recipient_str, split
from vault.signing import sign_document
from vault.switch import CASE_CARD_PREFIX, make_case_card

HERE = Path(__file__).resolve().parent
SEED = b"velador test vectors v1"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400

# --- deterministic material ----------------------------------------------------------------------


def derive(label: str, n: int = 32) -> bytes:
    """`n` bytes for `label`: BLAKE2b keyed with the generator seed (no randomness anywhere)."""
    return hashlib.blake2b(label.encode(), key=SEED, digest_size=n).digest()


class Stream:
    """A seeded byte stream (SHAKE-256 of label || counter) standing in for a CSPRNG."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.counter = 0

    def __call__(self, n: int) -> bytes:
        self.counter += 1
        return hashlib.shake_256(f"{self.label}/{self.counter}".encode()).digest(n)


@contextlib.contextmanager
def deterministic(label: str) -> Iterator[None]:
    """Make SLIP-39 splitting and sealed boxes deterministic for the duration of the block."""
    stream = Stream(label)

    def seeded_seal(message: bytes, pk: bytes) -> bytes:
        epk, esk = nacl.bindings.crypto_box_seed_keypair(stream(32))
        nonce = hashlib.blake2b(epk + pk, digest_size=24).digest()
        return epk + nacl.bindings.crypto_box(message, nonce, pk, esk)

    saved = (shamir_mnemonic.shamir.RANDOM_BYTES, nacl.bindings.crypto_box_seal)
    shamir_mnemonic.shamir.RANDOM_BYTES = stream
    nacl.bindings.crypto_box_seal = seeded_seal
    try:
        yield
    finally:
        shamir_mnemonic.shamir.RANDOM_BYTES, nacl.bindings.crypto_box_seal = saved


class Party:
    """A person or node with keys made from fixed seeds, and its contact card."""

    def __init__(self, label: str, name: str, role: str, url: str | None = None) -> None:
        self.sign = SigningKey(derive(f"{label}/ed25519"))
        self.box = PrivateKey(derive(f"{label}/x25519"))
        self.card: Card = make_card(name, role, self.sign, bytes(self.box.public_key), T0, url)


REPORTER = Party("reporter", "Ana Reportera", "reporter")
FORGER = Party("forger", "Ana Reportera", "reporter")  # same name, other keys
OUTLET_1 = Party("outlet-1", "Redacción Norte", "outlet")
OUTLET_2 = Party("outlet-2", "Outlet Abroad", "outlet")
EDITOR = Party("editor", "Editora Jefa", "editor")
NODE_1 = Party("node-1", "Nodo CDMX", "node", "https://nodo-cdmx.example.org")
NODE_2 = Party("node-2", "Node Berlin", "node", "https://node-berlin.example.net")

CASE_ID = derive("case-id", 10).hex()
OTHER_CASE_ID = derive("other-case-id", 10).hex()
RELEASE_SECRET = derive("release-secret")
OTHER_SECRET = derive("other-release-secret")
CHUNK_KEY = derive("chunk-key")
CHUNKER_SEED = int.from_bytes(derive("chunker-seed", 8), "big") >> 1  # 63 bits
SPEC = ShareSpec(1, ((2, 3),))
STORES = (
    "s3://velador-vectors/cases?endpoint=https://s3.example.org&region=mx-central-1",
    "file:///media/usb/velador-store",
)


def b64key(key: PrivateKey | SigningKey) -> str:
    return b64e(bytes(key))


# --- vectors ----------------------------------------------------------------------------------

Vector = tuple[str, dict[str, str], bytes]
"""(relative path without .txt, headers in order, body)."""


def card_text(doc: dict[str, Any], *, canonical: bool = True) -> str:
    raw = canonical_json(doc) if canonical else json.dumps(doc, indent=1).encode()
    return CARD_PREFIX + b64e(raw)


def card_vectors() -> list[Vector]:
    out: list[Vector] = []
    text = REPORTER.card.text
    out.append(
        (
            "card/valid",
            {
                "expect": "success",
                "comment": "a reporter's contact card; the fingerprint is what people read aloud",
                "kind": "card",
                "fingerprint": REPORTER.card.fingerprint,
            },
            text.encode(),
        )
    )
    out.append(
        (
            "card/valid-node",
            {
                "expect": "success",
                "comment": "an escrow node's card carries the node URL",
                "kind": "card",
                "fingerprint": NODE_1.card.fingerprint,
            },
            NODE_1.card.text.encode(),
        )
    )
    # One character of the base64url text changed: the JSON, the signature or the encoding breaks.
    i = len(CARD_PREFIX) + 40
    flipped = text[:i] + ("B" if text[i] != "B" else "C") + text[i + 1 :]
    out.append(
        (
            "card/flipped-character",
            {
                "expect": "format error",
                "comment": "one base64url character of a valid card changed",
                "kind": "card",
            },
            flipped.encode(),
        )
    )
    doc = json.loads(_unb64(text[len(CARD_PREFIX) :]))
    out.append(
        (
            "card/non-canonical-json",
            {
                "expect": "format error",
                "comment": "same signed document, re-encoded with white space: one card, one "
                "spelling",
                "kind": "card",
            },
            card_text(doc, canonical=False).encode(),
        )
    )
    out.append(
        (
            "card/padded-base64",
            {
                "expect": "format error",
                "comment": "base64url with '=' padding is not the canonical encoding",
                "kind": "card",
            },
            (text + "=" * (-(len(text) - len(CARD_PREFIX)) % 4 or 4)).encode(),
        )
    )
    body = dict(doc["body"])
    forged = sign_document("card", body, FORGER.sign)  # body announces the reporter's key
    out.append(
        (
            "card/signed-by-another-key",
            {
                "expect": "format error",
                "comment": "self-consistent signature, but by a key other than the one the card "
                "announces (cards report every failure as a format error)",
                "kind": "card",
            },
            card_text(forged).encode(),
        )
    )
    body2 = dict(body, v=2)
    out.append(
        (
            "card/unknown-version",
            {
                "expect": "format error",
                "comment": "body v = 2, correctly signed: unknown versions are refused",
                "kind": "card",
            },
            card_text(sign_document("card", body2, REPORTER.sign)).encode(),
        )
    )
    return out


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_policy(
    case_id: str = CASE_ID,
    secret: bytes = RELEASE_SECRET,
    *,
    replaces: str | None = None,
    created: int = T0,
) -> Policy:
    holders = (
        Holder("n1", 0, 0, "node", NODE_1.card),
        Holder("n2", 0, 1, "node", NODE_2.card),
        Holder("h3", 0, 2, "offline"),
    )
    switch = Switch(
        every=7 * DAY,
        grace=2 * DAY,
        remind=(DAY, 3600),
        editors=(EDITOR.card,),
        editor_quorum=1,
        objection_window=DAY,
        duress="alert",
        destroy_delay=0,
    )
    unsigned = Policy(
        case_id=case_id,
        created=created,
        reporter=REPORTER.card,
        recipients=(OUTLET_1.card, OUTLET_2.card),
        release_recipient=age_recipient_str(secret),
        spec=SPEC,
        holders=holders,
        stores=STORES,
        switch=switch,
        replaces=replaces,
    )
    return sign_policy(unsigned, REPORTER.sign)


def policy_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, ensure_ascii=False).encode()


def policy_vectors(policy: Policy) -> list[Vector]:
    out: list[Vector] = [
        (
            "policy/valid",
            {
                "expect": "success",
                "comment": "2-of-3 shares (two escrow nodes, one offline holder), two recipient "
                "outlets, one editor, two stores; the envelope vectors use this policy",
                "kind": "policy",
                "policy-hash": policy.hash,
            },
            policy_bytes(policy.doc),
        )
    ]
    body = copy.deepcopy(policy.doc["body"])
    out.append(
        (
            "policy/signed-by-another-key",
            {
                "expect": "authentication error",
                "comment": "the body names the reporter, the signature is by another key",
                "kind": "policy",
            },
            policy_bytes(sign_document("policy", body, FORGER.sign)),
        )
    )
    bad = copy.deepcopy(body)
    bad["sharing"]["holders"][2]["member"] = 1  # two holders for member 1, none for member 2
    out.append(
        (
            "policy/holders-not-covering-shares",
            {
                "expect": "format error",
                "comment": "three holders for three shares, but two hold member 1 and none "
                "holds member 2",
                "kind": "policy",
            },
            policy_bytes(sign_document("policy", bad, REPORTER.sign)),
        )
    )
    short = copy.deepcopy(body)
    del short["sharing"]["holders"][2]
    out.append(
        (
            "policy/holders-fewer-than-shares",
            {
                "expect": "format error",
                "comment": "a 2-of-3 layout with only two holders",
                "kind": "policy",
            },
            policy_bytes(sign_document("policy", short, REPORTER.sign)),
        )
    )
    v2 = dict(copy.deepcopy(body), v=2)
    out.append(
        (
            "policy/unknown-version",
            {
                "expect": "format error",
                "comment": "body v = 2, correctly signed: unknown versions are refused",
                "kind": "policy",
            },
            policy_bytes(sign_document("policy", v2, REPORTER.sign)),
        )
    )

    def refused(name: str, comment: str, doc_bytes: bytes) -> None:
        out.append(
            (
                f"policy/{name}",
                {"expect": "format error", "comment": comment, "kind": "policy"},
                doc_bytes,
            )
        )

    def resigned(edit: Any) -> bytes:
        b = copy.deepcopy(body)
        edit(b)
        return policy_bytes(sign_document("policy", b, REPORTER.sign))

    # A member named twice: a reader keeping the last one sees the signed stores, one keeping
    # the first sees another store; readers MUST refuse it (format.md §1.1).
    text = policy_bytes(policy.doc).decode()
    assert text.count('"stores": [') == 1
    dup = text.replace('"stores": [', '"stores": ["file:///media/other"],\n  "stores": [', 1)
    refused(
        "duplicate-member",
        "the body names 'stores' twice; the second is the signed one, the first another store",
        dup.encode(),
    )
    refused(
        "unknown-field",
        "a body member version 1 does not define ('name'), correctly signed",
        resigned(lambda b: b.update(name="caso-puerto")),
    )
    refused(
        "replaces-not-lowercase-hex",
        "'replaces' is 64 characters but upper-case hex",
        resigned(lambda b: b.update(replaces=derive("old-policy").hex().upper())),
    )
    refused(
        "recipient-not-an-outlet",
        "the reporter's own card among the recipients (recipients are outlets or editors)",
        resigned(lambda b: b["recipients"].append(b["reporter"])),
    )
    refused(
        "recipient-twice",
        "one outlet listed twice among the recipients",
        resigned(lambda b: b["recipients"].append(b["recipients"][0])),
    )
    offline = copy.deepcopy(body)
    for h in offline["sharing"]["holders"]:
        h["kind"] = "offline"
        h.pop("node", None)
    out.append(
        (
            "policy/switch-without-node",
            {
                "expect": "policy error",
                "comment": "switch rules, but every share is offline: no node could enforce them",
                "kind": "policy",
            },
            policy_bytes(sign_document("policy", offline, REPORTER.sign)),
        )
    )
    return out


def envelope_vectors(policy: Policy, mnemonics: list[str]) -> list[Vector]:
    holders = {h.id: h for h in policy.holders}
    n1 = holders["n1"]
    with deterministic("envelopes"):
        env_1, env_2 = make_envelopes(policy, n1, mnemonics[0], REPORTER.sign)
        # The reporter's own mistake (or a bug): n1's envelope carrying the share of member 2.
        wrong_slot = make_envelopes(policy, n1, mnemonics[2], REPORTER.sign)[0]
        other_case = make_policy(OTHER_CASE_ID, OTHER_SECRET)
        (env_other_case, _) = make_envelopes(other_case, n1, mnemonics[0], REPORTER.sign)
        rotated = make_policy(replaces=policy.hash, created=T0 + 30 * DAY)
        (env_other_version, _) = make_envelopes(rotated, n1, mnemonics[0], REPORTER.sign)
    common = {"kind": "envelope", "policy": "policy/valid.txt"}
    ident_1 = b64key(OUTLET_1.box)
    out: list[Vector] = [
        (
            "envelope/valid",
            {
                "expect": "success",
                "comment": "node n1's share sealed to the first recipient outlet; open it with "
                "the identity below",
                **common,
                "identity": ident_1,
                "holder": "n1",
            },
            canonical_json(env_1),
        ),
        (
            "envelope/valid-outer-layer",
            {
                "expect": "success",
                "comment": "what an escrow node checks without opening anything: the outer "
                "signature and the binding to the policy",
                **common,
                "holder": "n1",
            },
            canonical_json(env_2),
        ),
    ]
    altered = copy.deepcopy(env_1)
    sealed = bytearray(_unb64(altered["body"]["sealed"]))
    sealed[40] ^= 0x01
    altered["body"]["sealed"] = b64e(bytes(sealed))
    out.append(
        (
            "envelope/altered-sealed-bytes",
            {
                "expect": "authentication error",
                "comment": "one bit of the sealed box flipped; the outer signature no longer "
                "verifies",
                **common,
                "identity": ident_1,
            },
            canonical_json(altered),
        )
    )
    out.append(
        (
            "envelope/resigned-by-forger",
            {
                "expect": "authentication error",
                "comment": "a valid envelope body re-signed by a key that is not the reporter's",
                **common,
                "identity": ident_1,
            },
            canonical_json(sign_document("envelope", env_1["body"], FORGER.sign)),
        )
    )
    out.append(
        (
            "envelope/other-case",
            {
                "expect": "format error",
                "comment": "signed by the same reporter, but for another case",
                **common,
                "identity": ident_1,
            },
            canonical_json(env_other_case),
        )
    )
    out.append(
        (
            "envelope/other-policy-version",
            {
                "expect": "format error",
                "comment": "same case, but made under a later version of the policy (a rotation)",
                **common,
                "identity": ident_1,
            },
            canonical_json(env_other_version),
        )
    )
    out.append(
        (
            "envelope/not-addressed-to-opener",
            {
                "expect": "authentication error",
                "comment": "a valid envelope for the second outlet, opened with the first "
                "outlet's key",
                **common,
                "identity": ident_1,
            },
            canonical_json(env_2),
        )
    )
    out.append(
        (
            "envelope/share-of-another-slot",
            {
                "expect": "authentication error",
                "comment": "correctly signed and sealed, but the mnemonic inside is member 2 "
                "while the policy gives holder n1 member 0",
                **common,
                "identity": ident_1,
            },
            canonical_json(wrong_slot),
        )
    )
    return out


def typo(mnemonic: str) -> str:
    words = mnemonic.split()
    words[5] = "academic" if words[5] != "academic" else "acid"
    return " ".join(words)


def share_vectors(mnemonics: list[str]) -> list[Vector]:
    recipient = age_recipient_str(RELEASE_SECRET)
    known = {
        "recipient": recipient,
        "secret": RELEASE_SECRET.hex(),
        "age-identity": age_identity_str(RELEASE_SECRET),
    }
    with deterministic("shares"):
        (foreign,) = split(OTHER_SECRET, SPEC)
        group_secret = derive("group-secret")
        groups = split(group_secret, ShareSpec(2, ((2, 3), (2, 2))))

    def body(ms: list[str]) -> bytes:
        return json.dumps(ms, indent=1).encode()

    return [
        (
            "shares/valid-2-of-3",
            {
                "expect": "success",
                "comment": "shares 1 and 3 of the case's 2-of-3 split give its release secret",
                "kind": "shares",
                **known,
            },
            body([mnemonics[0], mnemonics[2]]),
        ),
        (
            "shares/valid-all-three",
            {
                "expect": "success",
                "comment": "more shares than needed: any two that combine are used",
                "kind": "shares",
                **known,
            },
            body(mnemonics),
        ),
        (
            "shares/valid-with-foreign-share",
            {
                "expect": "success",
                "comment": "a share of another secret is mixed in; the combination that gives "
                "the policy's age recipient wins",
                "kind": "shares",
                **known,
            },
            body([foreign[0], mnemonics[1], mnemonics[2]]),
        ),
        (
            "shares/valid-two-level-groups",
            {
                "expect": "success",
                "comment": "2 of the groups (2 of 3, 2 of 2): two members from each group",
                "kind": "shares",
                "recipient": age_recipient_str(group_secret),
                "secret": group_secret.hex(),
                "age-identity": age_identity_str(group_secret),
            },
            body([groups[0][0], groups[0][2], groups[1][0], groups[1][1]]),
        ),
        (
            "shares/too-few",
            {
                "expect": "share error",
                "comment": "one share of a 2-of-3 split",
                "kind": "shares",
                "recipient": recipient,
            },
            body([mnemonics[1]]),
        ),
        (
            "shares/typo-leaves-too-few",
            {
                "expect": "share error",
                "comment": "two shares, one with a wrong word: it is skipped, one is not enough",
                "kind": "shares",
                "recipient": recipient,
            },
            body([typo(mnemonics[0]), mnemonics[1]]),
        ),
        (
            "shares/another-secret",
            {
                "expect": "share error",
                "comment": "two valid shares that combine, but into another case's key",
                "kind": "shares",
                "recipient": recipient,
            },
            body(foreign[:2]),
        ),
        (
            "mnemonic/valid",
            {
                "expect": "success",
                "comment": "one SLIP-39 share (member 1 of group 1, 33 words)",
                "kind": "mnemonic",
            },
            mnemonics[0].encode(),
        ),
        (
            "mnemonic/typo",
            {
                "expect": "format error",
                "comment": "the same share with its sixth word replaced: the RS1024 checksum fails",
                "kind": "mnemonic",
            },
            typo(mnemonics[0]).encode(),
        ),
    ]


NOTES = "Entrevista con la fuente «A», 12 de marzo.\n".encode()
LEDGER = bytes(range(256)) * 4


def base_manifest(policy_hash: str) -> Manifest:
    def file(path: str, data: bytes, mtime: int) -> Entry:
        return Entry(
            path, "file", 0o644, mtime, len(data), ((object_id(CHUNK_KEY, data), len(data)),)
        )

    return Manifest(
        case_id=CASE_ID,
        policy_hash=policy_hash,
        seq=1,
        created=T0 + 3600,
        parent=None,
        label="caso-puerto",
        chunk_key=CHUNK_KEY,
        chunker_seed=CHUNKER_SEED,
        entries=(
            Entry("investigacion", "dir", 0o755, T0 - DAY),
            Entry(
                "investigacion/contabilidad.bin",
                "file",
                0o600,
                T0 - 2 * DAY,
                len(LEDGER),
                (
                    (object_id(CHUNK_KEY, LEDGER[:600]), 600),
                    (object_id(CHUNK_KEY, LEDGER[600:]), 424),
                ),
            ),
            file("investigacion/notas.txt", NOTES, T0 - 3 * DAY),
        ),
        instructions="Publicar con Redacción Norte; llamar primero a la editora.",
        roots=("investigacion",),
    )


def manifest_vectors(policy: Policy) -> list[Vector]:
    m = base_manifest(policy.hash)
    common = {
        "kind": "manifest",
        "reporter": b64e(REPORTER.card.sign_pk),
        "case-id": CASE_ID,
    }

    def signed(body: dict[str, Any], key: SigningKey = REPORTER.sign) -> bytes:
        return json.dumps(
            sign_document("snapshot", body, key), indent=1, ensure_ascii=False
        ).encode()

    def variant(entries_edit: Any = None, **fields: Any) -> dict[str, Any]:
        body = copy.deepcopy(m.body())
        body.update(fields)
        if entries_edit is not None:
            entries_edit(body["entries"])
        return body

    def vec(name: str, expect: str, comment: str, body: dict[str, Any], **extra: str) -> Vector:
        return (
            f"manifest/{name}",
            {"expect": expect, "comment": comment, **common, **extra},
            signed(body),
        )

    notes = {
        "path": "investigacion/notas.txt",
        "type": "file",
        "mode": 0o644,
        "mtime": T0,
        "size": len(NOTES),
        "chunks": [[object_id(CHUNK_KEY, NOTES), len(NOTES)]],
    }

    def add(entry: dict[str, Any]) -> Any:
        return lambda entries: entries.append(entry)

    def with_path(path: str) -> Any:
        return add(dict(notes, path=path))

    out = [
        vec(
            "valid",
            "success",
            "a first snapshot: one folder, two files (one of two chunks), "
            "instructions for the outlets",
            m.body(),
        ),
        vec(
            "valid-second",
            "success",
            "a later snapshot: seq 2 names its parent's id",
            variant(seq=2, parent=derive("parent-snapshot").hex()),
        ),
        vec(
            "path-dotdot",
            "unsafe path",
            "a path that climbs out of the output folder",
            variant(with_path("investigacion/../../.ssh/authorized_keys")),
        ),
        vec(
            "path-absolute",
            "unsafe path",
            "an absolute path",
            variant(with_path("/etc/cron.d/velador")),
        ),
        vec(
            "path-nul",
            "unsafe path",
            "a NUL byte inside a path",
            variant(with_path("investigacion/notas.txt\u0000.pdf")),
        ),
        vec(
            "path-backslash",
            "unsafe path",
            "a backslash, a separator on Windows",
            variant(with_path("investigacion\\..\\..\\boot.ini")),
        ),
        vec(
            "path-not-nfc",
            "unsafe path",
            "a path in Unicode NFD (e + combining acute)",
            variant(with_path("investigacion/cafe\u0301.txt")),
        ),
        vec(
            "duplicate-path", "unsafe path", "the same path listed twice", variant(add(dict(notes)))
        ),
        vec(
            "duplicate-path-case",
            "unsafe path",
            "two paths that differ only in letter case collide on case-insensitive file systems",
            variant(with_path("investigacion/NOTAS.txt")),
        ),
        vec(
            "file-under-file",
            "unsafe path",
            "a path below a path that is a file",
            variant(with_path("investigacion/notas.txt/oculto")),
        ),
        vec(
            "symlink-type",
            "unsafe path",
            "an entry of type symlink: never restored",
            variant(
                add(
                    {
                        "path": "investigacion/enlace",
                        "type": "symlink",
                        "mode": 0o777,
                        "mtime": T0,
                        "target": "/home",
                    }
                )
            ),
        ),
        vec(
            "size-mismatch",
            "format error",
            "a file whose chunk lengths do not add up to its size",
            variant(add(dict(notes, path="investigacion/otra.txt", size=len(NOTES) + 1))),
        ),
        vec(
            "impossible-chunk-length",
            "format error",
            f"a chunk longer than the chunker's maximum ({CHUNK_MAX} bytes)",
            variant(
                add(
                    dict(
                        notes,
                        path="investigacion/grande.bin",
                        size=CHUNK_MAX + 1,
                        chunks=[[object_id(CHUNK_KEY, b"x"), CHUNK_MAX + 1]],
                    )
                )
            ),
        ),
        vec(
            "zero-chunk-length",
            "format error",
            "a chunk of length 0",
            variant(
                add(
                    dict(
                        notes,
                        path="investigacion/vacio.bin",
                        size=0,
                        chunks=[[object_id(CHUNK_KEY, b""), 0]],
                    )
                )
            ),
        ),
        vec(
            "unknown-version",
            "format error",
            "body v = 4 (the first version this reader does not know), correctly signed",
            variant(v=4),
        ),
        vec(
            "unknown-chunker",
            "format error",
            "a chunker this version does not know",
            variant(chunker={"alg": "rabin", "seed": 1, "hash": OBJECT_ID_HASH}),
        ),
        vec("seq-without-parent", "format error", "seq 2 but no parent id", variant(seq=2)),
        vec(
            "other-case",
            "format error",
            "a correctly signed manifest of another case",
            variant(case_id=OTHER_CASE_ID),
        ),
    ]
    out += [
        vec(
            "unknown-field",
            "format error",
            "a body member version 1 does not define ('note')",
            variant(note="x"),
        ),
        vec(
            "file-entry-unknown-field",
            "format error",
            "a file entry with a member version 1 does not define ('target')",
            variant(add(dict(notes, path="investigacion/otra.txt", target="/etc/passwd"))),
        ),
        vec(
            "parent-not-lowercase-hex",
            "format error",
            "seq 2 whose parent id is 64 characters of upper-case hex",
            variant(seq=2, parent=derive("parent-snapshot").hex().upper()),
        ),
        vec(
            "root-not-covering",
            "format error",
            "an entry outside every root: a later deposit of its name would not replace it",
            variant(roots=["otra"]),
        ),
        vec(
            "root-not-single-component",
            "format error",
            "a root that is not a single top-level name",
            variant(roots=["investigacion/sub"]),
        ),
        vec(
            "label-too-long",
            "format error",
            "a label of 1025 bytes of UTF-8 (limit 1024)",
            variant(label="a" * 1025),
        ),
        vec(
            "seed-out-of-range",
            "format error",
            "a chunker seed of 2^63",
            variant(chunker={"alg": CHUNKER_NAME, "seed": 2**63, "hash": OBJECT_ID_HASH}),
        ),
    ]
    text = signed(m.body()).decode()
    assert text.count('"label": ') == 1
    out.append(
        (
            "manifest/duplicate-member",
            {
                "expect": "format error",
                "comment": "the body names 'label' twice (the second is the signed one)",
                **common,
            },
            text.replace('"label": ', '"label": "otro caso",\n  "label": ', 1).encode(),
        )
    )
    out.append(
        (
            "manifest/signed-by-another-key",
            {
                "expect": "authentication error",
                "comment": "a valid body signed by a key that is not the reporter's",
                **common,
            },
            signed(m.body(), FORGER.sign),
        )
    )
    out += manifest_v2_vectors(m, common, signed, vec)
    out += manifest_v3_vectors(m, common, vec)
    assert m.body()["chunker"] == {
        "alg": CHUNKER_NAME,
        "seed": CHUNKER_SEED,
        "hash": OBJECT_ID_HASH,
    }
    return out


def manifest_v2_vectors(m: Manifest, common: dict[str, str], signed: Any, vec: Any) -> list[Vector]:
    """Manifest version 2: chunk references may carry the flag "zstd" (format.md §6.4)."""
    ledger_2 = m.entries[1].chunks[1][0]
    m2 = dataclasses.replace(m, zstd=frozenset({ledger_2}))
    body = m2.body()
    assert body["v"] == 2 and body["entries"][1]["chunks"][1][2] == "zstd"

    def edited(edit: Any) -> dict[str, Any]:
        out = copy.deepcopy(body)
        edit(out)
        return out

    def v1_label(b: dict[str, Any]) -> bytes:
        sig = REPORTER.sign.sign(b"velador/v1/snapshot\n" + canonical_json(b)).signature
        doc = {"kind": "snapshot", "body": b, "signer": b64e(REPORTER.card.sign_pk)}
        return json.dumps(dict(doc, sig=b64e(sig)), indent=1, ensure_ascii=False).encode()

    def dup(b: dict[str, Any]) -> None:
        b["entries"][2]["chunks"] = [[ledger_2, 45]]  # notas.txt names the ledger's chunk, raw

    return [
        vec(
            "v2-valid",
            "success",
            "version 2: the second chunk of contabilidad.bin is stored as a zstd frame",
            body,
        ),
        vec(
            "v2-unknown-flag",
            "format error",
            "version 2 with a chunk flag other than zstd",
            edited(lambda b: b["entries"][1]["chunks"][1].__setitem__(2, "lz4")),
        ),
        vec(
            "v2-flags-disagree",
            "format error",
            "version 2 naming one object both compressed and as it is",
            edited(dup),
        ),
        vec(
            "v1-with-flag",
            "format error",
            "version 1 with a zstd flag: version 1 chunk references have two members",
            edited(lambda b: b.__setitem__("v", 1)),
        ),
        (
            "manifest/v2-signed-with-v1-label",
            {
                "expect": "authentication error",
                "comment": "a version 2 body signed under the version 1 label",
                **common,
            },
            v1_label(body),
        ),
    ]


def manifest_v3_vectors(m: Manifest, common: dict[str, str], vec: Any) -> list[Vector]:
    """Manifest version 3: chunks stored in packs (format.md §6.3 "Packs", §6.4)."""
    notes_oid = m.entries[2].chunks[0][0]
    ledger_1, ledger_2 = (oid for oid, _ in m.entries[1].chunks)
    pack = NOTES + LEDGER[600:]  # notas.txt, then the second chunk of contabilidad.bin
    pid = object_id(CHUNK_KEY, pack)
    m3 = dataclasses.replace(
        m,
        zstd=frozenset({pid}),
        packs={pid: len(pack)},
        placed={notes_oid: (pid, 0), ledger_2: (pid, len(NOTES))},
    )
    body = m3.body()
    assert body["v"] == 3 and body["packs"] == {pid: [len(pack), "zstd"]}
    assert body["entries"][1]["chunks"][0] == [ledger_1, 600]
    other = object_id(CHUNK_KEY, b"otro paquete")

    def edited(edit: Any) -> dict[str, Any]:
        out = copy.deepcopy(body)
        edit(out)
        return out

    def notes_ref(b: dict[str, Any]) -> list[Any]:
        return b["entries"][2]["chunks"][0]  # type: ignore[no-any-return]

    def label(version: int, b: dict[str, Any]) -> bytes:
        sig = REPORTER.sign.sign(b"velador/v%d/snapshot\n" % version + canonical_json(b))
        doc = {"kind": "snapshot", "body": b, "signer": b64e(REPORTER.card.sign_pk)}
        return json.dumps(dict(doc, sig=b64e(sig.signature)), indent=1, ensure_ascii=False).encode()

    def pack_as_chunk(b: dict[str, Any]) -> None:
        b["entries"].append(
            {
                "path": "investigacion/paquete.bin",
                "type": "file",
                "mode": 0o644,
                "mtime": T0,
                "size": len(pack),
                "chunks": [[pid, len(pack)]],  # the pack's id, named without its "zstd" flag
            }
        )

    return [
        vec(
            "v3-valid",
            "success",
            "version 3: notas.txt and the second chunk of contabilidad.bin are stored in one "
            "pack, itself a zstd frame; the first chunk of contabilidad.bin is an object of "
            "its own",
            body,
        ),
        vec(
            "v3-pack-not-listed",
            "format error",
            "version 3 with a chunk in a pack that packs does not list",
            edited(lambda b: notes_ref(b).__setitem__(3, other)),
        ),
        vec(
            "v3-outside-pack",
            "format error",
            "version 3 with a chunk whose offset plus length passes the end of its pack",
            edited(lambda b: notes_ref(b).__setitem__(4, len(pack) - len(NOTES) + 1)),
        ),
        vec(
            "v3-unused-pack",
            "format error",
            "version 3 listing a pack that no chunk reference names",
            edited(lambda b: b["packs"].__setitem__(other, [12])),
        ),
        vec(
            "v3-pack-forms-disagree",
            "format error",
            "version 3: the pack is marked zstd in packs, and a plain reference names its id "
            "without the flag",
            edited(pack_as_chunk),
        ),
        vec(
            "v2-with-pack",
            "format error",
            "version 2 with a pack reference: packs exist from version 3",
            edited(lambda b: b.__setitem__("v", 2)),
        ),
        vec(
            "v3-zstd-and-pack",
            "format error",
            "version 3 with a reference that carries both zstd and pack",
            edited(lambda b: notes_ref(b).insert(2, "zstd")),
        ),
        (
            "manifest/v3-signed-with-v2-label",
            {
                "expect": "authentication error",
                "comment": "a version 3 body signed under the version 2 label",
                **common,
            },
            label(2, body),
        ),
        *compressed_manifest_vectors(
            dataclasses.replace(m, zstd=frozenset({ledger_2})).body(), body, vec
        ),
    ]


def compressed_manifest_vectors(v2: dict[str, Any], v3: dict[str, Any], vec: Any) -> list[Vector]:
    """Snapshots stored as a zstd frame (format.md §6.4, "Compressed manifests"): the body is
    the plaintext, and the `compress` header tells the runner how to compress it."""

    def zstd(name: str, expect: str, comment: str, body: dict[str, Any], how: str) -> Vector:
        return vec(name, expect, comment, body, compress=how)

    assert v2["v"] == 2 and v3["v"] == 3
    return [
        zstd("v3-compressed", "success", "version 3 stored as one zstd frame", v3, "zstd"),
        zstd(
            "v2-compressed",
            "format error",
            "version 2 stored as a zstd frame: only version 3 may be compressed",
            v2,
            "zstd",
        ),
        zstd(
            "v3-compressed-two-frames",
            "format error",
            "version 3 stored as two zstd frames, which zstd -d would join: exactly one frame",
            v3,
            "zstd, two frames",
        ),
        zstd(
            "v3-compressed-trailing-bytes",
            "format error",
            "version 3 stored as a zstd frame followed by a skippable frame: nothing may follow",
            v3,
            "zstd, trailing bytes",
        ),
        zstd(
            "v3-compressed-no-size",
            "format error",
            "version 3 stored as a zstd frame that does not declare its content size",
            v3,
            "zstd, no content size",
        ),
    ]


def case_card_vectors(policy: Policy) -> list[Vector]:
    """Case cards (format.md §9.5): unsigned pointers to a policy by its hash."""
    good = make_case_card(policy)
    assert good.startswith(CASE_CARD_PREFIX)
    body = json.loads(_unb64(good[len(CASE_CARD_PREFIX) :]))
    common = {"kind": "case", "case-id": CASE_ID, "policy-hash": policy.hash}

    def card(b: dict[str, Any]) -> bytes:
        return (CASE_CARD_PREFIX + b64e(canonical_json(b))).encode()

    def vec(name: str, expect: str, comment: str, text: bytes) -> Vector:
        return (f"case/{name}", {"expect": expect, "comment": comment, **common}, text)

    def edited(**fields: Any) -> bytes:
        return card(dict(body, **fields))

    unpadded = good[len(CASE_CARD_PREFIX) :]
    dup = canonical_json(body).replace(b'{"case_id":', b'{"case_id":"0000000000","case_id":', 1)
    extra = dict(body, note="x")
    return [
        vec(
            "valid",
            "success",
            "the card 'velador case card' prints for the vectors' policy",
            good.encode(),
        ),
        vec(
            "valid-surrounding-space",
            "success",
            "spaces and a line break around the card, as pasted from a message, are ignored",
            b"  " + good.encode() + b" \r",
        ),
        vec(
            "contact-card-prefix",
            "format error",
            "the body of a case card behind the contact card prefix",
            ("velador:card:v1:" + unpadded).encode(),
        ),
        vec(
            "padded-base64",
            "format error",
            "base64url with = padding",
            (good + "=" * (-len(unpadded) % 4 or 4)).encode(),
        ),
        vec("unknown-version", "format error", "body v = 2", edited(v=2)),
        vec("unknown-field", "format error", "a member version 1 does not define", card(extra)),
        vec(
            "duplicate-member",
            "format error",
            "the body names 'case_id' twice",
            (CASE_CARD_PREFIX + b64e(dup)).encode(),
        ),
        vec(
            "policy-hash-uppercase",
            "format error",
            "a policy hash in upper-case hex",
            edited(policy_hash=policy.hash.upper()),
        ),
        vec(
            "case-id-uppercase",
            "format error",
            "a case id with capitals",
            edited(case_id=CASE_ID.upper()),
        ),
        vec("no-nodes", "format error", "a card without escrow nodes", edited(nodes=[])),
        vec(
            "node-not-a-node",
            "format error",
            "a reporter's contact card where a node card belongs",
            edited(nodes=[REPORTER.card.text]),
        ),
        vec(
            "store-too-long",
            "format error",
            "a store URL of 2048 characters (limit 2047)",
            edited(stores=["file:///" + "a" * 2040]),
        ),
    ]


def all_vectors() -> list[Vector]:
    policy = make_policy()
    with deterministic("case-split"):
        (mnemonics,) = split(RELEASE_SECRET, SPEC)
    return (
        card_vectors()
        + policy_vectors(policy)
        + envelope_vectors(policy, mnemonics)
        + share_vectors(mnemonics)
        + manifest_vectors(policy)
        + case_card_vectors(policy)
    )


def render(headers: dict[str, str], body: bytes) -> bytes:
    lines = []
    for key, value in headers.items():
        if "\n" in value:
            raise ValueError(f"header {key} spans lines")
        lines.append(f"{key}: {value}\n")
    return "".join(lines).encode() + b"\n" + body + b"\n"


def write(out: Path) -> list[Path]:
    written = []
    for name, headers, body in all_vectors():
        path = out / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(headers, body))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into")
    args = parser.parse_args(argv)
    written = write(args.out)
    print(f"wrote {len(written)} vectors under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
