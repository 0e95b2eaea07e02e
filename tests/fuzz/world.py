"""One small, valid Velador world for the fuzz tests, built without Argon2 or a network.

Keys come from fixed seeds, so every document here is the same on every run except where the
library itself draws randomness (SLIP-39 shares, sealed boxes, age). Everything is built once per
process (`world()`), then the tests mutate copies.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

from nacl.public import PrivateKey
from nacl.signing import SigningKey
from pyrage import x25519

from vault.cards import Card, make_card
from vault.constants import CARD_PREFIX
from vault.encoding import b64e, canonical_json
from vault.envelope import make_envelopes
from vault.manifest import Entry, Manifest, seal_snapshot
from vault.nodeproto.messages import make_heartbeat
from vault.objects import encrypt, object_id
from vault.policy import Holder, Policy, Switch, sign_policy
from vault.shares import ShareSpec, age_identity, age_identity_str, age_recipient_str, split
from vault.signing import sign_document

T0 = 1_767_225_600
CASE_ID = "0123456789abcdef0123"
SECRET = bytes(range(100, 132))
CHUNK_KEY = bytes(range(32))
DATA = b"Entrevista con la fuente, 12 de marzo.\n"


@dataclass
class Party:
    sign: SigningKey
    box: PrivateKey
    card: Card


def party(tag: str, name: str, role: str, url: str | None = None) -> Party:
    sign = SigningKey(tag.encode().ljust(32, b"s"))
    box = PrivateKey(tag.encode().ljust(32, b"b"))
    return Party(sign, box, make_card(name, role, sign, bytes(box.public_key), T0, url))


@dataclass
class World:
    reporter: Party
    outlet: Party
    editor: Party
    nodes: list[Party]
    policy: Policy
    mnemonics: list[str]
    envelopes: dict[str, list[dict[str, Any]]]
    manifest: Manifest
    age_id: x25519.Identity

    def policy_body(self) -> dict[str, Any]:
        return copy.deepcopy(self.policy.doc["body"])

    def envelope(self, holder: str = "n1") -> dict[str, Any]:
        return copy.deepcopy(self.envelopes[holder][0])

    def heartbeat_body(self) -> dict[str, Any]:
        hb = make_heartbeat(self.policy, self.reporter.sign, 3, T0)
        return copy.deepcopy(hb["body"])

    def manifest_body(self) -> dict[str, Any]:
        return copy.deepcopy(self.manifest.body())

    def inner_share_body(self, holder: str = "n1") -> dict[str, Any]:
        h = next(h for h in self.policy.holders if h.id == holder)
        return {
            "v": 1,
            "case_id": self.policy.case_id,
            "policy_hash": self.policy.hash,
            "holder": h.id,
            "group": h.group,
            "member": h.member,
            "mnemonic": self.mnemonics[h.member],
        }

    def case_card_body(self) -> dict[str, Any]:
        return {
            "v": 1,
            "case_id": self.policy.case_id,
            "policy_hash": self.policy.hash,
            "nodes": [n.card.text for n in self.nodes],
            "stores": ["file:///media/usb/store"],
        }


@functools.lru_cache(maxsize=1)
def world() -> World:
    reporter = party("reporter", "Ana Reportera", "reporter")
    outlet = party("outlet", "Diario Norte", "outlet")
    editor = party("editor", "Edita", "editor")
    nodes = [party(f"node{i}", f"node {i}", "node", f"http://127.0.0.1:{9000 + i}") for i in (1, 2)]
    spec = ShareSpec(1, ((2, 3),))
    holders = (
        Holder("n1", 0, 0, "node", nodes[0].card),
        Holder("n2", 0, 1, "node", nodes[1].card),
        Holder("h3", 0, 2, "offline"),
    )
    policy = sign_policy(
        Policy(
            case_id=CASE_ID,
            created=T0,
            reporter=reporter.card,
            recipients=(outlet.card,),
            release_recipient=age_recipient_str(SECRET),
            spec=spec,
            holders=holders,
            stores=("file:///media/usb/store",),
            switch=Switch(
                every=3600,
                grace=600,
                remind=(300,),
                editors=(editor.card,),
                editor_quorum=1,
                objection_window=300,
            ),
        ),
        reporter.sign,
    )
    mnemonics = split(SECRET, spec)[0]
    envelopes = {
        h.id: make_envelopes(policy, h, mnemonics[h.member], reporter.sign) for h in holders
    }
    oid = object_id(CHUNK_KEY, DATA)
    manifest = Manifest(
        case_id=CASE_ID,
        policy_hash=policy.hash,
        seq=2,
        created=T0 + 60,
        parent="ab" * 32,
        label="caso-puerto",
        chunk_key=CHUNK_KEY,
        chunker_seed=42,
        entries=(
            Entry("inv", "dir", 0o755, T0),
            Entry("inv/notas.txt", "file", 0o644, T0, len(DATA), ((oid, len(DATA)),)),
            Entry("inv/vacío", "file", 0o600, T0, 0, ()),
            Entry("inv/sub", "dir", 0o700, T0),
        ),
        instructions="Publicar con Diario Norte.",
        roots=("inv",),
    )
    return World(
        reporter,
        outlet,
        editor,
        nodes,
        policy,
        mnemonics,
        envelopes,
        manifest,
        age_identity(SECRET),
    )


def resign(kind: str, body: Any, key: SigningKey, template: dict[str, Any]) -> dict[str, Any]:
    """`body` signed as `kind` by `key`; a body that cannot be signed (a lone surrogate, nesting
    too deep to encode) keeps the template's old signature, which a reader must refuse."""
    try:
        return sign_document(kind, body, key)
    except (ValueError, TypeError, RecursionError):
        doc = dict(template)
        doc["body"] = body
        return doc


def card_text(doc: Any) -> str:
    try:
        return CARD_PREFIX + b64e(canonical_json(doc))
    except (ValueError, TypeError, RecursionError):
        return CARD_PREFIX + "AAAA"


def sealed_snapshot(doc: Any) -> bytes | None:
    """age ciphertext of canonical(doc) to the world's release recipient (None: not encodable)."""
    try:
        plain = canonical_json(doc)
    except (ValueError, TypeError, RecursionError):
        return None
    return encrypt(plain, world().policy.release_recipient)


def valid_snapshot() -> tuple[str, bytes]:
    w = world()
    return seal_snapshot(w.manifest, w.reporter.sign, w.policy.release_recipient)


AGE_IDENTITY_STR = age_identity_str(SECRET)
