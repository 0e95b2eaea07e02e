"""The signed case policy (docs/format.md §4).

The policy is the case's constitution: who the reporter is, who may recover, how the secret is
split and who holds each share, where the ciphertext lives and, when escrow nodes hold shares, the
switch rules the nodes enforce. It is a signed document of kind "policy"; its id (`policy_hash`) is
the BLAKE2b-256 of the canonical JSON of the whole signed document. It deliberately carries no case
*name*: the name often says what the investigation is about, and nodes do not need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from .cards import Card, parse_card
from .constants import MAX_HOLDERS, MAX_RECIPIENTS
from .encoding import doc_hash, parse_json, require
from .errors import N_, AuthenticationError, FormatError, PolicyError
from .shares import ShareSpec
from .signing import sign_document, verify_document

DURESS_ACTIONS = ("alert", "release")
_CASE_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")
_HEX = set("0123456789abcdef")
RECIPIENT_ROLES = ("outlet", "editor")
"""Who may recover: outlets, and editors (journalists at an outlet), as `case create` allows."""

_BODY_FIELDS = {
    "v",
    "case_id",
    "created",
    "reporter",
    "recipients",
    "release_recipient",
    "sharing",
    "stores",
    "switch",
    "replaces",
}
_SHARING_FIELDS = {"scheme", "group_threshold", "groups", "holders"}
_GROUP_FIELDS = {"threshold", "members"}
_SWITCH_FIELDS = {
    "every",
    "grace",
    "remind",
    "editors",
    "editor_quorum",
    "objection_window",
    "duress",
    "destroy_delay",
    "drill_every",
}


def _only(obj: Any, allowed: set[str], what: str) -> None:
    """Refuse members a version 1 reader does not know (format.md §4): nothing is ignored."""
    if isinstance(obj, dict):
        extra = sorted(set(obj) - allowed)
        if extra:
            raise FormatError(
                N_("%(what)s has an unknown field %(extra)r"), what=what, extra=extra[0][:40]
            )


@dataclass(frozen=True)
class Holder:
    """One SLIP-39 share and who keeps it: an offline file or an escrow node."""

    id: str
    group: int
    member: int
    kind: str  # "offline" | "node"
    node: Card | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "group": self.group,
            "member": self.member,
            "kind": self.kind,
        }
        if self.node is not None:
            out["node"] = self.node.text
        return out


@dataclass(frozen=True)
class Switch:
    """Rules the escrow nodes enforce (seconds). Absent for offline-only cases."""

    every: int
    grace: int
    remind: tuple[int, ...] = ()
    editors: tuple[Card, ...] = ()
    editor_quorum: int = 0
    objection_window: int = 0
    duress: str = "alert"
    destroy_delay: int = 0
    drill_every: int = 0
    """Seconds between scheduled drills (docs/format.md §4, protocol.md §11.1); 0: none."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "every": self.every,
            "grace": self.grace,
            "remind": list(self.remind),
            "editors": [c.text for c in self.editors],
            "editor_quorum": self.editor_quorum,
            "objection_window": self.objection_window,
            "duress": self.duress,
            "destroy_delay": self.destroy_delay,
        }
        # Written only when set: a policy without scheduled drills stays byte-identical to
        # one written before the member existed, so nodes of that release still accept it
        # (they refuse unknown members, which is right for a policy that asks for drills).
        if self.drill_every:
            out["drill_every"] = self.drill_every
        return out


@dataclass(frozen=True)
class Policy:
    case_id: str
    created: int
    reporter: Card
    recipients: tuple[Card, ...]
    release_recipient: str
    spec: ShareSpec
    holders: tuple[Holder, ...]
    stores: tuple[str, ...]
    switch: Switch | None = None
    replaces: str | None = None
    doc: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def hash(self) -> str:
        return doc_hash(self.doc)

    @property
    def nodes(self) -> tuple[Card, ...]:
        seen: dict[bytes, Card] = {}
        for h in self.holders:
            if h.node is not None:
                seen.setdefault(h.node.sign_pk, h.node)
        return tuple(seen.values())

    def holders_of(self, node_sign_pk: bytes) -> tuple[Holder, ...]:
        return tuple(
            h for h in self.holders if h.node is not None and h.node.sign_pk == node_sign_pk
        )

    def recipient_by_fingerprint(self, fp: str) -> Card | None:
        return next((c for c in self.recipients if c.fingerprint == fp), None)

    def body(self) -> dict[str, Any]:
        return {
            "v": 1,
            "case_id": self.case_id,
            "created": self.created,
            "reporter": self.reporter.text,
            "recipients": [c.text for c in self.recipients],
            "release_recipient": self.release_recipient,
            "sharing": {
                "scheme": "slip39",
                "group_threshold": self.spec.group_threshold,
                "groups": [{"threshold": k, "members": n} for k, n in self.spec.groups],
                "holders": [h.to_json() for h in self.holders],
            },
            "stores": list(self.stores),
            "switch": self.switch.to_json() if self.switch else None,
            "replaces": self.replaces,
        }


MAX_CHAIN = 32
"""Longest chain of replacements followed (docs/format.md §9.5): 32 rotations of one case."""


def replacement_path(
    newest: Policy, pinned: str, chain: Iterable[Policy], limit: int = MAX_CHAIN
) -> list[Policy] | None:
    """The earlier versions from `newest` back to the policy whose hash is `pinned`, newest
    first and ending with that policy, or None when `chain` holds no such path (docs/format.md
    §9.5). [] when `newest` is the pinned policy itself.

    Every link is verified: each policy of `chain` was parsed (so signed by the reporter it
    names), each step's `replaces` names the next one's hash, and every policy on the path has
    the case id and the reporter key of `newest`. The pinned policy must itself be in `chain`:
    its hash ties it to the pin, and its signature ties the reporter key to it, so a policy
    signed by anybody else can never claim to replace it."""
    if newest.hash == pinned:
        return []
    by_hash = {p.hash: p for p in chain}
    path: list[Policy] = []
    cur = newest
    for _ in range(limit):
        prev = by_hash.get(cur.replaces) if cur.replaces else None
        if prev is None or prev.hash != cur.replaces:
            return None
        if prev.case_id != newest.case_id or prev.reporter.sign_pk != newest.reporter.sign_pk:
            return None
        path.append(prev)
        if prev.hash == pinned:
            return path
        cur = prev
    return None


def sign_policy(policy: Policy, key: SigningKey) -> Policy:
    if bytes(key.verify_key) != policy.reporter.sign_pk:
        raise ValueError("the policy must be signed by its reporter")
    doc = sign_document("policy", policy.body(), key)
    return parse_policy(doc)


def _cards(values: Any, what: str, roles: tuple[str, ...]) -> tuple[Card, ...]:
    if not isinstance(values, list):
        raise FormatError(N_("policy %(what)s must be a list"), what=what)
    cards = tuple(parse_card(v) for v in values)
    for card in cards:
        if card.role not in roles:
            raise FormatError(
                N_(
                    "case policy lists %(name)r (%(role)s) among its %(what)s; %(what)s must be "
                    "%(roles)s cards"
                ),
                name=card.name,
                role=card.role,
                what=what,
                roles=" or ".join(roles),
            )
    if len({c.fingerprint for c in cards}) != len(cards):
        raise FormatError(N_("case policy lists one of its %(what)s twice"), what=what)
    return cards


def _int(obj: Any, key: str, lo: int, hi: int, what: str) -> int:
    value = require(obj, key, int, what)
    if not lo <= value <= hi:
        raise FormatError(N_("%(what)s: %(key)s out of range"), what=what, key=key)
    return value


def _parse_switch(sw: Any) -> Switch | None:
    if sw is None:
        return None
    year = 366 * 86400
    _only(sw, _SWITCH_FIELDS, "switch")
    editors = _cards(require(sw, "editors", list, "switch"), "editors", ("editor",))
    sw_obj = Switch(
        every=_int(sw, "every", 1, year, "switch"),
        grace=_int(sw, "grace", 0, year, "switch"),
        remind=tuple(
            _int({"r": r}, "r", 1, year, "switch remind")
            for r in require(sw, "remind", list, "switch")
        ),
        editors=editors,
        editor_quorum=_int(sw, "editor_quorum", 0, len(editors), "switch"),
        objection_window=_int(sw, "objection_window", 0, year, "switch"),
        duress=require(sw, "duress", str, "switch"),
        destroy_delay=_int(sw, "destroy_delay", 0, year, "switch"),
        drill_every=_int(sw, "drill_every", 86400, 5 * year, "switch")
        if "drill_every" in sw
        else 0,
    )
    if sw_obj.duress not in DURESS_ACTIONS:
        raise FormatError(N_("switch: unknown duress action"))
    if len(sw_obj.remind) > 16:
        raise FormatError(N_("switch: too many reminders"))
    return sw_obj


def parse_policy(doc: Any, expected_reporter: bytes | None = None) -> Policy:
    """Parse and verify a signed policy document from untrusted input."""
    if isinstance(doc, (bytes, str)):
        doc = parse_json(doc, "case policy", max_bytes=1024 * 1024)
    if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict):
        raise FormatError(N_("case policy is not a signed document"))
    # The policy must be signed by the reporter it names (and by the pinned one, when given).
    reporter = parse_card(require(doc["body"], "reporter", str, "case policy"))
    if expected_reporter is not None and reporter.sign_pk != expected_reporter:
        raise AuthenticationError(N_("case policy names a different reporter than expected"))
    body = verify_document(doc, "policy", reporter.sign_pk, what="case policy")
    if require(body, "v", int, "case policy") != 1:
        raise FormatError(N_("unsupported case policy version"), hint=N_("upgrade velador"))
    _only(body, _BODY_FIELDS, "case policy")
    case_id = require(body, "case_id", str, "case policy")
    # Lower-case only: the case id is a store key component (docs/format.md §7).
    if not (8 <= len(case_id) <= 64 and set(case_id) <= _CASE_ID_CHARS):
        raise FormatError(N_("case policy has an invalid case id"))
    recipients = _cards(
        require(body, "recipients", list, "case policy"), "recipients", RECIPIENT_ROLES
    )
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise FormatError(N_("a case needs 1 to %(limit)s recipients"), limit=MAX_RECIPIENTS)
    rr = require(body, "release_recipient", str, "case policy")
    if not rr.startswith("age1") or len(rr) > 100:
        raise FormatError(N_("case policy has an invalid release recipient"))
    sharing = require(body, "sharing", dict, "case policy")
    _only(sharing, _SHARING_FIELDS, "sharing")
    if require(sharing, "scheme", str, "sharing") != "slip39":
        raise FormatError(N_("unknown sharing scheme"))
    raw_groups = require(sharing, "groups", list, "sharing")
    for g in raw_groups:
        _only(g, _GROUP_FIELDS, "group")
    groups = tuple(
        (_int(g, "threshold", 1, 16, "group"), _int(g, "members", 1, 16, "group"))
        for g in raw_groups
    )
    try:
        spec = ShareSpec(_int(sharing, "group_threshold", 1, 16, "sharing"), groups)
    except Exception as exc:
        raise FormatError(
            N_("case policy has an invalid share layout (%(error)s)"), error=str(exc)
        ) from exc
    holders = []
    for h in require(sharing, "holders", list, "sharing"):
        kind = require(h, "kind", str, "holder")
        if kind not in ("offline", "node"):
            raise FormatError(N_("holder kind must be offline or node"))
        fields = {"id", "group", "member", "kind"} | ({"node"} if kind == "node" else set())
        _only(h, fields, "holder")
        node = parse_card(require(h, "node", str, "holder")) if kind == "node" else None
        if node is not None and (node.role != "node" or node.url is None):
            raise FormatError(N_("a node holder must carry a node card with a URL"))
        hid = require(h, "id", str, "holder")
        if not (1 <= len(hid) <= 32 and hid.isascii() and hid.replace("-", "").isalnum()):
            raise FormatError(N_("holder id must be 1-32 letters, digits or dashes"))
        holders.append(
            Holder(
                hid,
                _int(h, "group", 0, 15, "holder"),
                _int(h, "member", 0, 15, "holder"),
                kind,
                node,
            )
        )
    if len(holders) != spec.total or len(holders) > MAX_HOLDERS * 16:
        raise FormatError(N_("case policy: number of holders does not match the share layout"))
    slots = {(h.group, h.member) for h in holders}
    expected = {(g, m) for g, (_, n) in enumerate(groups) for m in range(n)}
    if slots != expected or len({h.id for h in holders}) != len(holders):
        raise FormatError(N_("case policy: holders do not cover each share exactly once"))
    stores = require(body, "stores", list, "case policy")
    if not stores or not all(isinstance(s, str) and len(s) < 2048 for s in stores):
        raise FormatError(N_("case policy must name at least one store"))
    replaces = body.get("replaces")
    if replaces is not None and not (
        isinstance(replaces, str) and len(replaces) == 64 and set(replaces) <= _HEX
    ):
        raise FormatError(N_("case policy: 'replaces' must be a policy hash (64 lowercase hex)"))
    switch = _parse_switch(body.get("switch"))
    if switch is not None and not any(h.kind == "node" for h in holders):
        raise PolicyError(N_("a switch needs at least one escrow node"))
    return Policy(
        case_id=case_id,
        created=require(body, "created", int, "case policy"),
        reporter=reporter,
        recipients=recipients,
        release_recipient=rr,
        spec=spec,
        holders=tuple(holders),
        stores=tuple(stores),
        switch=switch,
        replaces=replaces,
        doc=doc,
    )
