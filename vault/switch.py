"""The reporter's side of the switch: arming, status and actions at every node; the case card.

Implements the client half of docs/protocol.md §4.1 and §4.4 over vault.nodeproto.client.NodeClient.
Every operation fans out to the case's nodes in parallel (one thread and one client per node, each
with a timeout) and returns one `NodeResult` per node: a verified, signed answer or the error that
node gave. Nothing here prints; the CLI (cli/switch_cmds.py, cli/case_cmds.py) renders results.
Check-ins live in vault/checkin.py, the custody audit in vault/custody.py.

Arming is all or nothing from the reporter's point of view: the per-node registration state is
written to local state (`node_regs`) BEFORE any node is contacted and updated after each answer,
so a refused, unreachable or interrupted registration leaves a case that is visibly "arming"
(never silently half-armed) and that `arm` completes later (registration is idempotent at nodes).

Case card (`velador case card`), the one line a recipient outlet needs:

    velador:case:v1:<base64url(canonical_json(body))>    (no padding, like contact cards)

    body = {"v": 1,
            "case_id": "<case id>",
            "policy_hash": "<hex BLAKE2b-256 of the signed policy at the time of the card>",
            "nodes": ["<node contact card, velador:card:v1:...>", ...],
            "stores": ["file:///...", "s3://bucket/prefix", ...]}

The card is not signed: it only points. Everything it points at is checked against the policy the
nodes release, which is signed by the reporter and must hash to `policy_hash` (or, after a
`case rotate`, name it through its `replaces` chain). The node cards carry the node keys and
URLs, so node answers are checked against pinned keys from the first request.
`parse_case_card` is the one parser (used by `velador recover`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vault.nodeproto import transport
from vault.nodeproto.client import NodeClient

from .cards import Card, parse_card
from .clock import Clock
from .encoding import b64d, b64e, canonical_json, parse_json, require
from .errors import N_, FormatError, NodeError, NotFoundError, PolicyError, VeladorError
from .identity import Identity
from .policy import Policy
from .released import ReleaseInfo, learn_release
from .state import CaseRecord, LocalState

if TYPE_CHECKING:
    from .netrecover import CaseRef

CASE_CARD_PREFIX = "velador:case:v1:"
DEFAULT_TIMEOUT = 10.0
CLOSED_CODES = ("registration_closed", "invitation_refused")
"""A node's answer when its registration is closed to this key (docs/protocol.md §4.1.1)."""
TASK_TIMEOUTS = 2
"""A fan-out task may take this many `timeout`s in all (the longest task makes two requests)."""
LIVE_STATES = ("ARMED", "REMINDED", "OVERDUE", "PAUSED", "EDITOR_PENDING")
"""Node states in which the node still holds its envelopes and can release."""


@dataclass
class NodeResult:
    node: str  # node name from its card
    fingerprint: str
    body: dict[str, Any] | None = None  # the verified answer body
    error: VeladorError | None = None
    queued: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def unreachable(self) -> bool:
        return isinstance(self.error, NodeError)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "fingerprint": self.fingerprint, "ok": self.ok}
        if self.body is not None:
            out.update(
                {
                    k: self.body.get(k)
                    for k in (
                        "state",
                        "seq",
                        "deadline",
                        "release_at",
                        "paused_until",
                        "time",
                        "last_beat",
                        "pending_until",
                        "editor_requests",
                        "editor_quorum",
                        "envelopes",
                        "policy_hash",
                    )
                    if k in self.body
                }
            )
        if self.error is not None:
            out["error"] = self.error.message
        if self.queued:
            out["queued"] = True
        return out


def fan_out(
    cards: Iterable[Card],
    identity: Identity | None,
    clock: Clock,
    fn: Callable[[NodeClient], dict[str, Any]],
    timeout: float = DEFAULT_TIMEOUT,
) -> list[NodeResult]:
    """Call `fn` on a client of every node in parallel; one result per node, in input order."""
    return run_parallel([(c, fn) for c in cards], identity, clock, timeout)


def run_parallel(
    tasks: list[tuple[Card, Callable[[NodeClient], dict[str, Any]]]],
    identity: Identity | None,
    clock: Clock,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[NodeResult]:
    """Run (node, call) pairs in parallel threads, one client each; results in input order."""
    if not tasks:
        return []

    def one(task: tuple[Card, Callable[[NodeClient], dict[str, Any]]]) -> NodeResult:
        card, fn = task
        res = NodeResult(card.name, card.fingerprint)
        try:
            # Each request is bounded by `timeout`; the task as a whole (a custody challenge
            # makes two requests) by TASK_TIMEOUTS of them, so a node that drips or stalls
            # cannot hold the fan-out longer than that (docs/protocol.md §4.9).
            with (
                transport.deadline(timeout * TASK_TIMEOUTS),
                NodeClient(card, identity, clock, timeout) as client,
            ):
                res.body = fn(client)
        except VeladorError as exc:
            res.error = exc
        return res

    with ThreadPoolExecutor(max_workers=min(16, len(tasks))) as pool:
        return list(pool.map(one, tasks))


def switch_policy(rec: CaseRecord) -> Policy:
    if rec.policy.switch is None or not rec.policy.nodes:
        raise PolicyError(
            N_("case %(name)s has no escrow nodes"),
            hint=N_("only cases created with --node have a switch"),
            name=rec.name,
        )
    return rec.policy


# One whole sentence per action and end state, so each can be translated as a whole.
_CLOSED = {
    ("arm", "released"): N_("cannot arm: case %(name)s was released"),
    ("arm", "destroyed"): N_("cannot arm: case %(name)s was destroyed"),
    ("check in", "released"): N_("cannot check in: case %(name)s was released"),
    ("check in", "destroyed"): N_("cannot check in: case %(name)s was destroyed"),
    ("pause", "released"): N_("cannot pause: case %(name)s was released"),
    ("pause", "destroyed"): N_("cannot pause: case %(name)s was destroyed"),
    ("resume", "released"): N_("cannot resume: case %(name)s was released"),
    ("resume", "destroyed"): N_("cannot resume: case %(name)s was destroyed"),
    ("release", "released"): N_("cannot release: case %(name)s was released"),
    ("release", "destroyed"): N_("cannot release: case %(name)s was destroyed"),
    ("object", "released"): N_("cannot object: case %(name)s was released"),
    ("object", "destroyed"): N_("cannot object: case %(name)s was destroyed"),
}


def _refuse_closed(rec: CaseRecord, action: str) -> None:
    if rec.status in ("destroyed", "released"):
        raise PolicyError(_CLOSED[(action, rec.status)], name=rec.name)


# --- arming ---------------------------------------------------------------------------------


def node_envelopes(
    policy: Policy, envelopes: dict[str, list[dict[str, Any]]], node: Card
) -> list[dict[str, Any]]:
    """The envelopes of every share this node holds (one per share and recipient)."""
    return [env for h in policy.holders_of(node.sign_pk) for env in envelopes.get(h.id, [])]


def mark_arming(state: LocalState, policy: Policy, now: int) -> None:
    """Record every node as pending before contacting any (so a crash leaves 'arming')."""
    regs = state.node_regs(policy)
    for card in policy.nodes:
        if card.fingerprint not in regs:
            state.set_node_reg(policy, card, "pending", None, now)


@dataclass
class ArmReport:
    case: str
    case_id: str
    results: list[NodeResult]  # nodes contacted this time
    regs: dict[str, tuple[str, str | None]]  # every node: (state, detail)
    names: dict[str, str] = field(default_factory=dict)  # fingerprint -> node name
    needs_invite: list[str] = field(default_factory=list)
    """Names of nodes that refused because their registration is closed to this key."""

    @property
    def armed(self) -> bool:
        return all(st == "registered" for st, _ in self.regs.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "case_id": self.case_id,
            "armed": self.armed,
            "nodes": [
                {"node": self.names.get(fp, fp), "fingerprint": fp, "state": st, "detail": d}
                for fp, (st, d) in self.regs.items()
            ],
        }


def arm(
    state: LocalState,
    identity: Identity,
    rec: CaseRecord,
    clock: Clock,
    timeout: float = DEFAULT_TIMEOUT,
    invitations: dict[str, str] | None = None,
) -> ArmReport:
    """Register the policy and each node's envelopes at every node not yet registered.

    `invitations` maps a node fingerprint to its invitation code (closed registration,
    docs/protocol.md §4.1.1); codes are held in memory only."""
    invitations = invitations or {}
    policy = switch_policy(rec)
    _refuse_closed(rec, "arm")
    mark_arming(state, policy, clock.now())
    envelopes = state.envelopes_of(policy, identity.box_key)
    regs = state.node_regs(policy)
    todo = [c for c in policy.nodes if regs.get(c.fingerprint, ("pending",))[0] != "registered"]
    by_fp = {c.fingerprint: c for c in policy.nodes}

    # Earlier versions, newest first: a node that missed rotations (down, or restored from an
    # old backup) follows `replaces` through them to the version it holds (protocol.md §4.1).
    chain = state.policy_history(policy)

    def register(client: NodeClient) -> dict[str, Any]:
        return client.register_case(
            policy,
            node_envelopes(policy, envelopes, client.card),
            chain or None,
            invitation=invitations.get(client.card.fingerprint),
        )

    results = fan_out(todo, identity, clock, register, timeout)
    now = clock.now()
    closed: list[str] = []
    for r in results:
        card = by_fp[r.fingerprint]
        if r.ok and r.body is not None:
            state.set_node_reg(policy, card, "registered", None, now)
            state.record_view(policy.case_id, r.fingerprint, r.body)
        else:
            what = "unreachable" if r.unreachable else "refused"
            state.set_node_reg(policy, card, what, r.error.message if r.error else None, now)
            if getattr(r.error, "code", None) in CLOSED_CODES:
                closed.append(card.name)
    return ArmReport(
        rec.name,
        policy.case_id,
        results,
        state.node_regs(policy),
        {c.fingerprint: c.name for c in policy.nodes},
        closed,
    )


def arming_state(state: LocalState, rec: CaseRecord) -> str:
    """'armed', 'arming' (some node not registered), 'offline' (no nodes) or the local status."""
    if rec.status in ("destroyed", "released"):
        return rec.status
    if rec.policy.switch is None or not rec.policy.nodes:
        return "offline"
    regs = state.node_regs(rec.policy)
    ok = all(regs.get(c.fingerprint, ("pending",))[0] == "registered" for c in rec.policy.nodes)
    return "armed" if ok else "arming"


def closed_unconfirmed(rec: CaseRecord) -> bool:
    """Closed on this laptop (released or destroyed) without any node having said so for real.

    A `release now` or `case destroy` forced under the duress passphrase is answered by the
    nodes from a cover state: the laptop marks the case closed, while the nodes keep it armed
    (docs/protocol.md §4.4). If the reporter's later check-ins skipped it, the nodes would
    release it: a false release. So under the normal passphrase such a case is still checked
    in; a node that really released or destroyed it refuses, and the refusal is recorded."""
    from .released import known_release

    if rec.status == "destroyed":
        return not rec.extra.get("destroy_confirmed", False)
    if rec.status == "released":
        info = known_release(rec)
        confirmed = rec.extra.get("release_confirmed", False)
        return not confirmed and (info is None or not info.complete)
    return False


def switch_cases(
    state: LocalState, names: Iterable[str] = (), revive: bool = False
) -> list[CaseRecord]:
    """The cases a check-in covers: named ones, or every case with a live switch.

    `revive` (a normal, not duress, identity): also the cases closed on this laptop that no
    node confirmed closed (closed_unconfirmed)."""
    names = list(names)
    if names:
        recs = [state.case(n) for n in names]
        for r in recs:
            switch_policy(r)
            if not (revive and closed_unconfirmed(r) and node_forms(state, r)):
                _refuse_closed(r, "check in")
        return recs
    out = []
    for r in state.cases():
        if (
            revive
            and closed_unconfirmed(r)
            and r.policy.switch is not None
            and node_forms(state, r)
        ):
            out.append(r)
            continue
        st = arming_state(state, r)
        # A case whose rotation reached no node yet is still checked in: its nodes hold the
        # previous version and release it if the check-ins stop (issue 11, finding 2).
        if st == "armed" or (st == "arming" and node_forms(state, r)):
            out.append(r)
    return out


# --- which version each node holds (docs/protocol.md §4.1, "Rotation completion") --------------

BEHIND = "behind"
"""node_regs state of a node that answered with an older version of the policy (restored from a
backup taken before a rotation): it is registered again by `velador case arm`."""


def node_forms(state: LocalState, rec: CaseRecord) -> list[tuple[Card, Policy]]:
    """Every node that holds some version of the case, with the version to address it with.

    A node registered under the current policy gets it; a node that missed the last
    rotations gets the newest earlier version it is registered under, so heartbeats in a form
    every node version accepts keep reaching it until `velador case arm` finishes the rotation;
    a node known to be behind on an unknown version gets the current one (nodes accept a
    reporter-signed heartbeat of any version of the case, protocol.md §3.1), as does a node
    registered under a version whose document this laptop did not keep. A node that holds no
    version (never armed) is left out."""
    policy = rec.policy
    if policy.switch is None:
        return []
    regs = state.node_regs(policy)
    older: list[tuple[Policy, dict[str, tuple[str, str | None]]]] | None = None
    out: list[tuple[Card, Policy]] = []
    for card in policy.nodes:
        st = regs.get(card.fingerprint, ("pending", None))[0]
        if st == "registered":
            out.append((card, policy))
            continue
        if older is None:
            older = [(p, state.node_regs(p)) for p in state.policy_history(policy)]
        form = next(
            (p for p, r in older if r.get(card.fingerprint, ("", None))[0] == "registered"), None
        )
        if form is not None:
            out.append((card, form))
        elif st == BEHIND or card.fingerprint in state.registered_under_other_versions(policy):
            out.append((card, policy))
    return out


def note_node_version(
    state: LocalState, policy: Policy, card: Card, node_hash: Any, now: int
) -> None:
    """Record which version a node said it holds (in a receipt or a status).

    A node we took as registered that names an older version was restored from a backup (or
    lost the registration): it is marked `behind`, so the warnings name it and `case arm`
    registers it again; a node that names the current version is registered."""
    if not isinstance(node_hash, str):
        return
    st = state.node_regs(policy).get(card.fingerprint, ("pending", None))[0]
    if node_hash == policy.hash:
        if st != "registered":
            state.set_node_reg(policy, card, "registered", None, now)
        return
    for p in state.policy_history(policy):
        if p.hash == node_hash:
            state.set_node_reg(p, card, "registered", None, now)
            break
    if st == "registered":
        state.set_node_reg(
            policy, card, BEHIND, "it holds an older version of the case policy", now
        )


def coverage_warnings(state: LocalState, rec: CaseRecord) -> list[str]:
    """Loud lines for `checkin` and `status` when the case is not at every node in its current
    version: a rotation some nodes missed, or nodes that never got the case (issue 11
    finding 2, issue 12 item 9). Empty when all is well."""
    if rec.status in ("destroyed", "released") or rec.policy.switch is None:
        return []
    policy = rec.policy
    regs = state.node_regs(policy)
    forms = {c.fingerprint: p for c, p in node_forms(state, rec)}
    todo = [
        c for c in policy.nodes if regs.get(c.fingerprint, ("pending", None))[0] != "registered"
    ]
    behind = [c.name for c in todo if c.fingerprint in forms]
    missing = [c.name for c in todo if c.fingerprint not in forms]
    lines = []
    arm = f"velador case arm {rec.name}"
    if len(behind) == 1:
        lines.append(
            f"The rotation of case {rec.name} is NOT finished: node {behind[0]} still holds an "
            "earlier version of the case policy and a share of the OLD key. Your check-ins "
            f"still reach it; run '{arm}' to finish the rotation as soon as it is reachable."
        )
    elif behind:
        lines.append(
            f"The rotation of case {rec.name} is NOT finished: nodes {', '.join(behind)} still "
            "hold an earlier version of the case policy and shares of the OLD key. Your "
            f"check-ins still reach them; run '{arm}' to finish the rotation as soon as they "
            "are reachable."
        )
    if len(missing) == 1:
        lines.append(
            f"Case {rec.name} is NOT armed at every node: node {missing[0]} does not hold it "
            f"and cannot release it if you fall silent. Run '{arm}' when it is reachable."
        )
    elif missing:
        lines.append(
            f"Case {rec.name} is NOT armed at every node: nodes {', '.join(missing)} do not "
            f"hold it and cannot release it if you fall silent. Run '{arm}' when they are "
            "reachable."
        )
    return lines


# --- status and actions ---------------------------------------------------------------------

COMPARED = ("state", "seq", "policy_hash", "deadline", "release_at", "paused_until")


@dataclass
class CaseStatus:
    case: str
    case_id: str
    local: str
    policy_hash: str
    results: list[NodeResult]
    warnings: list[str] = field(default_factory=list)
    """coverage_warnings: a rotation not finished, nodes that do not hold the case."""
    release: ReleaseInfo | None = None  # what this laptop knows of a release (vault/released.py)

    @property
    def disagreements(self) -> list[str]:
        """Human lines naming every field on which the nodes that answered differ."""
        answered = [r for r in self.results if r.ok and r.body is not None]
        out = []
        for key in COMPARED:
            values: dict[str, list[str]] = {}
            for r in answered:
                assert r.body is not None
                values.setdefault(json.dumps(r.body.get(key)), []).append(r.node)
            if len(values) > 1:
                parts = "; ".join(
                    f"{', '.join(nodes)}: {json.loads(v)}" for v, nodes in sorted(values.items())
                )
                out.append(f"nodes disagree on {key} ({parts})")
        for r in answered:
            assert r.body is not None
            if r.body.get("policy_hash") != self.policy_hash:
                out.append(f"{r.node} holds another version of the case policy")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "case_id": self.case_id,
            "local": self.local,
            "nodes": [r.to_json() for r in self.results],
            "disagreements": self.disagreements,
            "warnings": self.warnings,
            "release": self.release.to_json() if self.release else None,
        }


def gather_status(
    state: LocalState,
    identity: Identity,
    clock: Clock,
    rec: CaseRecord,
    timeout: float = DEFAULT_TIMEOUT,
) -> CaseStatus:
    """Each node's signed status.

    Under duress (identity unlocked with the duress passphrase) the request carries the duress
    marker and each node answers from its cover state (docs/protocol.md §4.4): the captor sees
    what the normal passphrase would show, and nothing learned then is kept on this laptop."""
    policy = switch_policy(rec)
    results = fan_out(policy.nodes, identity, clock, lambda c: c.status(policy.case_id), timeout)
    by_fp = {c.fingerprint: c for c in policy.nodes}
    now = clock.now()
    for r in results:
        if not r.ok or r.body is None:
            continue
        if identity.duress:
            # Duress-marked requests are answered from the node's cover state (protocol §4.4):
            # shown as they come, as the normal passphrase would show them; nothing recorded.
            continue
        state.record_view(policy.case_id, r.fingerprint, r.body)
        note_node_version(state, policy, by_fp[r.fingerprint], r.body.get("policy_hash"), now)
    answered = [r.body for r in results if r.ok and r.body is not None]
    if (
        not identity.duress
        and rec.status in ("destroyed", "released")
        and len(answered) == len(results)
        and all(b.get("state") in LIVE_STATES for b in answered)
    ):
        # Closed on this laptop but live at every node: only a destroy or release forced under
        # duress does that (docs/protocol.md §4.4). The reporter, free again, gets it back.
        state.set_case_status(policy.case_id, "active")
        rec = state.case(rec.name)
    # A release learned here is recorded so every later view shows it, offline too; never under
    # duress, where the rows above keep the cover view.
    release = learn_release(state, rec, results, clock.now(), record=not identity.duress)
    rec = state.case(rec.case_id)
    local = arming_state(state, rec)
    return CaseStatus(
        rec.name,
        policy.case_id,
        local,
        policy.hash,
        results,
        coverage_warnings(state, rec),
        release,
    )


ACTIONS: dict[str, Callable[..., Callable[[NodeClient], dict[str, Any]]]] = {
    "pause": lambda cid, until: lambda c: c.pause(cid, until),
    "resume": lambda cid: lambda c: c.resume(cid),
    "release": lambda cid: lambda c: c.release_now(cid),
    "object": lambda cid: lambda c: c.object(cid),
    "destroy": lambda cid: lambda c: c.destroy(cid),
}


def foreign_status(
    ref: CaseRef, identity: Identity, clock: Clock, timeout: float = DEFAULT_TIMEOUT
) -> list[NodeResult]:
    """Each node's status of a case this person does not own: an editor following the quorum
    and the objection window, or an outlet (`velador status CASE_CARD`, the browser's editor
    page). Nodes answer everyone the policy names (docs/protocol.md §4.4).

    Given a bare case id, every node you know is asked, and one that never heard of the case is
    not one of its nodes: it is left out rather than counted as a node that did not answer."""
    results = fan_out(ref.nodes, identity, clock, lambda c: c.status(ref.case_id), timeout)
    if ref.policy_hash is None:
        results = [r for r in results if not isinstance(r.error, NotFoundError)]
    if not results:
        raise NotFoundError(
            N_("no escrow node you know has case %(case_id)s"),
            hint=N_("ask the reporter for the case card, or add the case's nodes as contacts"),
            case_id=ref.case_id,
        )
    return results


def act(
    state: LocalState,
    identity: Identity,
    clock: Clock,
    rec: CaseRecord,
    action: str,
    *args: Any,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[NodeResult]:
    """Send one signed reporter action to every registered node of the case in parallel."""
    policy = switch_policy(rec)
    if action != "destroy":
        _refuse_closed(rec, action)
    # Every node that holds some version: a node that missed a rotation must be paused (or
    # told of a release) too, or it releases the old key while the reporter is paused.
    targets = [c for c, _ in node_forms(state, rec)]
    if not targets:
        raise PolicyError(
            N_("case %(name)s is not registered at any node"),
            hint=N_("run 'velador case arm %(name)s' first"),
            name=rec.name,
        )
    results = fan_out(targets, identity, clock, ACTIONS[action](policy.case_id, *args), timeout)
    done_state = {"release": "RELEASED", "destroy": "DESTROYED"}.get(action)
    for r in results:
        if done_state and r.error is not None and f"the case is {done_state}" in r.error.message:
            # Idempotent from the reporter's side: a re-run after a partial failure succeeds.
            r.error, r.body = None, {"state": done_state}
        if r.ok and r.body is not None and "time" in r.body:
            state.record_view(policy.case_id, r.fingerprint, r.body)
    if action == "release" and not identity.duress:
        learn_release(state, rec, results, clock.now(), rule="reporter")
    if action in ("release", "destroy") and all(r.ok for r in results):
        state.set_case_status(policy.case_id, "released" if action == "release" else "destroyed")
        if not identity.duress:
            # Done for real: later check-ins skip the case (closed_unconfirmed). Under duress the
            # nodes only showed a cover, and the normal passphrase's check-ins keep it alive.
            state.set_case_extra(policy.case_id, f"{action}_confirmed", True)
    return results


# --- case card ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseCard:
    case_id: str
    policy_hash: str
    nodes: tuple[Card, ...]
    stores: tuple[str, ...]
    text: str


def make_case_card(policy: Policy) -> str:
    body = {
        "v": 1,
        "case_id": policy.case_id,
        "policy_hash": policy.hash,
        "nodes": [c.text for c in policy.nodes],
        "stores": list(policy.stores),
    }
    return CASE_CARD_PREFIX + b64e(canonical_json(body))


def parse_case_card(text: str) -> CaseCard:
    """Parse a case card from untrusted input (format in the module docstring)."""
    bad = N_("this case card is malformed")
    hint = N_("ask the reporter to send the line from 'velador case card' again")
    if not isinstance(text, str) or len(text.strip()) > 64 * 1024:
        raise FormatError(bad, hint=hint)
    text = text.strip()
    if not text.startswith(CASE_CARD_PREFIX):
        raise FormatError(
            N_("this is not a case card (it should start with 'velador:case:v1:')"), hint=hint
        )
    try:
        body = parse_json(b64d(text[len(CASE_CARD_PREFIX) :], "case card"), "case card")
        if require(body, "v", int, "case card") != 1:
            raise FormatError(N_("unsupported case card version"))
        case_id = require(body, "case_id", str, "case card")
        policy_hash = require(body, "policy_hash", str, "case card")
        if not (
            8 <= len(case_id) <= 64 and set(case_id) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
        ):
            raise FormatError(N_("bad case id"))
        if len(policy_hash) != 64 or set(policy_hash) - set("0123456789abcdef"):
            raise FormatError(N_("bad policy hash"))
        nodes = [parse_card(n) for n in require(body, "nodes", list, "case card")]
        if not nodes or any(n.role != "node" or not n.url for n in nodes) or len(nodes) > 256:
            raise FormatError(N_("bad node"))
        stores = require(body, "stores", list, "case card")
        if not all(isinstance(s, str) and len(s) < 2048 for s in stores):
            raise FormatError(N_("bad store"))
        if set(body) != {"v", "case_id", "policy_hash", "nodes", "stores"}:
            raise FormatError(N_("unknown fields"))
    except FormatError as exc:
        raise FormatError(bad, hint=hint) from exc
    return CaseCard(case_id, policy_hash, tuple(nodes), tuple(stores), text)
