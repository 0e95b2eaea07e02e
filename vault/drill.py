"""Drills, the parties' side (docs/protocol.md §11): start one, answer one, read the verdict.

A drill rehearses the whole release path except the secret. The reporter starts it at every
node (`start`); each node sends a notice marked SIMULACRO / DRILL through every channel a real
release uses and gives every recipient a challenge sealed to the key its envelopes are sealed
to. A recipient or editor answers (`answer`): it fetches its challenge from every node it can
reach, opens it (recipients) or signs a drill-only request (editors), checks the case's stores,
and sends each node an answer that proves four things (§11.3). The reporter collects the
nodes' reports and reads one verdict (`verdict`): "a release now would reach N of M recipients
through K of N nodes", or what is broken and who must fix it.

Nothing here touches a share, a key or a file of the case: the worst a drill can do is fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import SealedBox

from . import __version__
from .cards import Card
from .clock import Clock
from .encoding import b64d, b64e
from .errors import N_, FormatError, StoreError, VeladorError
from .identity import Identity
from .manifest import snapshot_id
from .nodeproto.messages import make_drill_answer, make_drill_request, new_drill_id
from .objects import snapshot_prefix
from .policy import Policy
from .state import CaseRecord, LocalState
from .switch import NodeResult, fan_out, run_parallel

MAX_SNAPSHOTS_CHECKED = 3
"""Snapshots fetched per store to authenticate (the newest ids by name; each is checked
against its content address, which needs no key)."""
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
AGE_MAGIC = b"age-encryption.org/v1\n"


# --- starting -----------------------------------------------------------------------------------


MAX_STORES = 16
"""The most store URLs an answer checks (a case names a few)."""


def start(
    identity: Identity, policy: Policy, clock: Clock, timeout: float, drill: str | None = None
) -> tuple[str, list[NodeResult]]:
    """Start one drill, with one id, at every node of the case (reporter)."""
    drill = drill or new_drill_id()
    results = fan_out(
        policy.nodes, identity, clock, lambda c: c.drill_start(policy.case_id, drill), timeout
    )
    return drill, results


def start_case(
    state: LocalState, identity: Identity, rec: CaseRecord, clock: Clock, timeout: float
) -> tuple[str, list[NodeResult]]:
    """`start`, and remember on this laptop which drill was started when (`velador status`
    then shows its verdict). `velador drill CASE` and the browser's drill page call this."""
    drill_id, results = start(identity, rec.policy, clock, timeout)
    state.set_case_extra(rec.case_id, "drill", {"id": drill_id, "started": clock.now()})
    return drill_id, results


# --- answering ----------------------------------------------------------------------------------


@dataclass
class NodeAnswer:
    """What happened at one node when answering."""

    node: Card
    drill: str | None = None
    role: str | None = None
    proofs: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class AnswerReport:
    case_id: str
    reached: list[str] = field(default_factory=list)
    needed: int = 0
    stores: dict[str, int] | None = None
    store_problems: list[str] = field(default_factory=list)
    nodes: list[NodeAnswer] = field(default_factory=list)
    already: int = 0
    """Challenges this party had answered before (a second run answers nothing again)."""

    @property
    def ok(self) -> bool:
        return bool(self.nodes) and all(
            n.proofs and all(n.proofs[k] for k in ("key", "reach", "stores", "software"))
            for n in self.nodes
            if n.error is None
        )


def open_challenge(identity: Identity, sealed: str) -> str | None:
    """b64 of a recipient's challenge, opened with its box key; None if it cannot (lost key)."""
    try:
        return b64e(SealedBox(identity.box_key).decrypt(b64d(sealed, "drill challenge")))
    except (CryptoError, FormatError):
        return None


def check_stores(case_id: str, urls: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Proof 3: reach each store of the case and authenticate what is there (every snapshot
    checked matches its content address and is an age file). No key is needed, none used."""
    from .stores import open_store

    checked = ok = 0
    problems: list[str] = []
    for url in urls:
        checked += 1
        try:
            store = open_store(url)
            ids = sorted(k.rsplit("/", 1)[-1] for k in store.list(snapshot_prefix(case_id)))
            for sid in ids[-MAX_SNAPSHOTS_CHECKED:]:
                data = store.get(f"{snapshot_prefix(case_id)}{sid}", MAX_SNAPSHOT_BYTES)
                if snapshot_id(data) != sid or not data.startswith(AGE_MAGIC):
                    raise StoreError(N_("snapshot %(sid)s does not match its id"), sid=sid[:12])
            ok += 1
        except VeladorError as exc:
            problems.append(f"{url.split('?')[0]}: {exc.message}")  # English: the node's record
    return {"checked": checked, "ok": ok}, problems


def answer(
    identity: Identity,
    case_id: str,
    nodes: Sequence[Card],
    store_urls: Sequence[str],
    clock: Clock,
    timeout: float,
) -> AnswerReport:
    """Answer the open drill of `case_id` at every node that has one for this identity."""
    rep = AnswerReport(case_id)
    got = fan_out(nodes, identity, clock, lambda c: c.drill_challenge(case_id), timeout)
    offers: list[tuple[Card, dict[str, Any]]] = []
    for card, res in zip(nodes, got, strict=True):
        if res.ok and res.body:
            offers.append((card, res.body))
            rep.needed = max(rep.needed, int(res.body.get("needed") or 0))
        else:
            rep.nodes.append(NodeAnswer(card, error=str(res.error)))
    rep.reached = sorted(card.fingerprint for card, _ in offers)
    store_urls = list(store_urls) or agreed_stores([body for _, body in offers], rep.needed)
    if store_urls:
        rep.stores, rep.store_problems = check_stores(case_id, store_urls)

    tasks: list[tuple[Card, Callable[[Any], dict[str, Any]]]] = []
    for card, offer in offers:
        for ch in offer.get("challenges") or []:
            if ch.get("role") not in ("recipient", "editor"):
                continue
            if ch.get("answered"):
                rep.already += 1
                continue
            doc = _answer_doc(identity, case_id, card, offer, ch, rep, clock.now())
            tasks.append((card, _sender(case_id, doc, ch["role"], offer["drill"])))
    results = run_parallel(tasks, identity, clock, timeout)
    for (card, _), res in zip(tasks, results, strict=True):
        body = res.body or {}
        rep.nodes.append(
            NodeAnswer(
                card,
                body.get("drill"),
                body.get("role"),
                body.get("proofs"),
                None if res.ok else str(res.error),
            )
        )
    return rep


def agreed_stores(offers: Sequence[dict[str, Any]], needed: int) -> list[str]:
    """The stores named by at least `needed` (K) of the nodes' drill offers (protocol §11.2),
    for an answer made from a bare case id: one lying node cannot send the answerer to a URL
    of its choosing, and fewer than K nodes cannot release the case anyway."""
    counts: dict[tuple[str, ...], int] = {}
    for body in offers:
        stores = body.get("stores")
        if isinstance(stores, list) and stores and all(isinstance(u, str) for u in stores):
            key = tuple(stores[:MAX_STORES])
            counts[key] = counts.get(key, 0) + 1
    best = max(counts.items(), key=lambda kv: kv[1], default=((), 0))
    return list(best[0]) if best[1] >= max(1, needed) else []


def _answer_doc(
    identity: Identity,
    case_id: str,
    card: Card,
    offer: dict[str, Any],
    ch: dict[str, Any],
    rep: AnswerReport,
    now: int,
) -> dict[str, Any]:
    if ch["role"] == "recipient":
        proof: Any = open_challenge(identity, ch["challenge"])
    else:
        proof = make_drill_request(
            identity.sign_key, case_id, offer["drill"], card.fingerprint, ch["challenge"], now
        )
    return make_drill_answer(
        identity.sign_key,
        case_id=case_id,
        drill=offer["drill"],
        node=card.fingerprint,
        role=ch["role"],
        proof=proof,
        reached=rep.reached,
        stores=rep.stores,
        version=__version__,
        now=now,
    )


def _sender(
    case_id: str, doc: dict[str, Any], role: str, drill: str
) -> Callable[[Any], dict[str, Any]]:
    def send(client: Any) -> dict[str, Any]:
        receipt = client.drill_answer(case_id, doc)
        return {"drill": drill, "role": role, "proofs": receipt.get("proofs")}

    return send


# --- the verdict --------------------------------------------------------------------------------


@dataclass
class Problem:
    """One thing that is broken, and who must fix it (an N_ template and its values)."""

    template: str
    values: dict[str, Any]

    @property
    def english(self) -> str:
        return self.template % self.values


@dataclass
class Verdict:
    case_id: str
    drill: str | None
    recipients_ok: int
    recipients: int
    nodes_ok: int
    nodes: int
    problems: list[Problem]
    pending: int = 0
    """Deliveries still being tried (the drill is young: look again later)."""

    @property
    def ok(self) -> bool:
        return not self.problems and self.recipients_ok == self.recipients


def collect(
    identity: Identity, policy: Policy, clock: Clock, timeout: float, drill: str | None = None
) -> list[NodeResult]:
    """Every node's report of the drill (the newest one when `drill` is None)."""
    return fan_out(
        policy.nodes, identity, clock, lambda c: c.drill_report(policy.case_id, drill), timeout
    )


def _drill_of(reports: list[NodeResult]) -> str | None:
    """The newest drill any node reports (nodes may disagree when one missed a start)."""
    seen = sorted(
        ((r.body["started"], r.body["drill"]) for r in reports if r.ok and r.body),
        reverse=True,
    )
    return seen[0][1] if seen else None


def verdict(
    policy: Policy, reports: list[NodeResult], name: Callable[[str], str] = lambda fp: fp
) -> Verdict:
    """Judge a drill from the nodes' reports (docs/protocol.md §11.5). `name(fingerprint)`: how
    to call a party (its contact alias)."""
    drill = _drill_of(reports)
    problems: list[Problem] = []
    good_nodes = 0
    pending = 0
    answered_at: dict[str, set[str]] = {}
    answered_any: dict[str, set[str]] = {}
    failed_proof: dict[tuple[str, str], set[str]] = {}
    for card, res in zip(policy.nodes, reports, strict=True):
        body = res.body if res.ok else None
        if body is None or body.get("drill") != drill:
            why = str(res.error) if res.error else "it has no record of this drill"
            problems.append(
                Problem(
                    N_(
                        "node %(node)s gave no drill report (%(why)s): its operator must check "
                        "that it runs and can be reached"
                    ),
                    {"node": card.name, "why": why},
                )
            )
            continue
        node_ok = True
        for p in body["parties"]:
            for ch in p["channels"]:
                if ch["result"] == "pending":
                    pending += 1
                elif ch["result"] in ("failing", "failed"):
                    node_ok = False
                    problems.append(_channel_problem(card, p, ch, name))
            proofs = p.get("proofs")
            if p["answered"] is not None and proofs is not None:
                answered_any.setdefault(p["party"] + "/" + p["role"], set()).add(card.fingerprint)
                if all(proofs.get(k) for k in ("key", "stores", "software")):
                    answered_at.setdefault(p["party"] + "/" + p["role"], set()).add(
                        card.fingerprint
                    )
                for k in ("key", "reach", "stores", "software"):
                    if not proofs.get(k):
                        failed_proof.setdefault((p["party"] + "/" + p["role"], k), set()).add(
                            card.name
                        )
        good_nodes += node_ok
    needed = max((r.body or {}).get("needed", 1) for r in reports) if reports else 1
    ok_recipients = 0
    for who, role in [(c, "recipient") for c in policy.recipients] + [
        (c, "editor") for c in (policy.switch.editors if policy.switch else ())
    ]:
        key = who.fingerprint + "/" + role
        at = answered_at.get(key, set())
        if role == "recipient" and len(at) >= needed:
            ok_recipients += 1
        problems += _party_problems(who, role, key, answered_any, failed_proof, at, needed, name)
    return Verdict(
        policy.case_id,
        drill,
        ok_recipients,
        len(policy.recipients),
        good_nodes,
        len(policy.nodes),
        problems,
        pending,
    )


def answers_by_party(
    policy: Policy, reports: list[NodeResult]
) -> list[tuple[Card, str, list[tuple[str, int]]]]:
    """Per recipient and editor: (card, role, [(node name, when it answered there)])."""
    drill = _drill_of(reports)
    seen: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for card, res in zip(policy.nodes, reports, strict=True):
        body = res.body if res.ok else None
        if body is None or body.get("drill") != drill:
            continue
        for p in body["parties"]:
            if p["answered"] is not None:
                seen.setdefault((p["party"], p["role"]), []).append((card.name, p["answered"]))
    editors = policy.switch.editors if policy.switch else ()
    people = [(c, "recipient") for c in policy.recipients] + [(c, "editor") for c in editors]
    return [(c, role, sorted(seen.get((c.fingerprint, role), []))) for c, role in people]


def _channel_problem(
    card: Card, p: dict[str, Any], ch: dict[str, Any], name: Callable[[str], str]
) -> Problem:
    values = {
        "node": card.name,
        "channel": ch["channel"],
        "target": ch["target"],
        "who": name(p["party"]),
        "error": ch.get("error") or "-",
    }
    if ch["channel"] == "email":
        return Problem(
            N_(
                "node %(node)s could not send email to %(who)s (%(target)s: %(error)s): the "
                "operator of %(node)s must fix its mail server settings, or %(who)s must give "
                "a working address"
            ),
            values,
        )
    return Problem(
        N_(
            "node %(node)s could not deliver the %(channel)s to %(who)s (%(target)s: "
            "%(error)s): %(who)s must fix the receiver or register a working address"
        ),
        values,
    )


def _party_problems(
    who: Card,
    role: str,
    key: str,
    answered_any: dict[str, set[str]],
    failed_proof: dict[tuple[str, str], set[str]],
    at: set[str],
    needed: int,
    name: Callable[[str], str],
) -> list[Problem]:
    values: dict[str, Any] = {"who": name(who.fingerprint), "n": len(at), "k": needed}
    if key not in answered_any:
        if role == "recipient":
            return [
                Problem(
                    N_(
                        "recipient %(who)s did not answer at any node: %(who)s must run "
                        "'velador drill answer'; if %(who)s lost its key, the reporter must "
                        "rotate the case with its new card"
                    ),
                    values,
                )
            ]
        return [
            Problem(
                N_(
                    "editor %(who)s did not answer at any node: %(who)s must run "
                    "'velador drill answer'; if %(who)s lost its key, the reporter must "
                    "rotate the case with its new card"
                ),
                values,
            )
        ]
    out: list[Problem] = []
    if (key, "key") in failed_proof:
        values["nodes"] = ", ".join(sorted(failed_proof[(key, "key")]))
        if role == "recipient":
            out.append(
                Problem(
                    N_(
                        "recipient %(who)s cannot open what is sealed to it (at %(nodes)s): it "
                        "no longer holds the key its envelopes are sealed to; the reporter must "
                        "rotate the case with %(who)s's new card"
                    ),
                    values,
                )
            )
        else:
            out.append(
                Problem(
                    N_("editor %(who)s could not sign a release request (at %(nodes)s)"),
                    values,
                )
            )
    if (key, "stores") in failed_proof and role == "recipient":
        out.append(
            Problem(
                N_(
                    "recipient %(who)s could not read and check the case's stores: %(who)s "
                    "must answer with the case card and check its network; if a store is gone, "
                    "the reporter must add one"
                ),
                values,
            )
        )
    if (key, "software") in failed_proof:
        out.append(
            Problem(N_("%(who)s runs a velador too old to recover: %(who)s must upgrade"), values)
        )
    if role == "recipient" and len(at) < needed and (key, "key") not in failed_proof:
        out.append(
            Problem(
                N_(
                    "recipient %(who)s answered at fewer nodes (%(n)s) than a recovery needs "
                    "(%(k)s): %(who)s must check it can reach the case's nodes"
                ),
                values,
            )
        )
    return out
