"""The reporter's side of the switch: arming, check-ins, status, actions, custody audit.

Implements the client half of docs/protocol.md §4 over escrow_node.client.NodeClient. Every
operation fans out to the case's nodes in parallel (one thread and one client per node, each with
a timeout) and returns one `NodeResult` per node: a verified, signed answer or the error that
node gave. Nothing here prints; the CLI (cli/switch_cmds.py) renders the results.

Arming is all or nothing from the reporter's point of view: the per-node registration state is
written to local state (`node_regs`) BEFORE any node is contacted and updated after each answer,
so a refused, unreachable or interrupted registration leaves a case that is visibly "arming"
(never silently half-armed) and that `arm` completes later (registration is idempotent at nodes).

Check-ins: the heartbeat sequence number is allocated and made durable before the heartbeat is
signed (LocalState.next_heartbeat_seq), so a crash can never make two heartbeats with one number.
A node that cannot be reached gets the heartbeat queued with *transport tickets*: Authorization
headers signed now for that node, that path and that body, stamped every TICKET_STEP seconds over
the time the heartbeat stays useful. The node accepts a request stamped within its tolerance
(300 s) of its clock, so the agent can re-send the already-signed heartbeat later without the
passphrase and without ever being able to sign anything new. A stolen ticket can only deliver the
reporter's own old heartbeat to the node it names, which sets the deadline from the heartbeat's
signed time: no more than gossip between nodes would do.

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
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from escrow_node.auth import TOLERANCE, sign_request
from escrow_node.client import NodeClient
from escrow_node.messages import custody_digest, make_heartbeat

from .cards import Card, parse_card
from .clock import Clock
from .encoding import b64d, b64e, canonical_json, parse_json, require
from .errors import FormatError, NodeError, PolicyError, VeladorError
from .identity import Identity
from .policy import Policy
from .state import CaseRecord, LocalState

CASE_CARD_PREFIX = "velador:case:v1:"
TICKET_STEP = 240
"""Seconds between transport tickets: any moment is within 120 s of one, well inside the node's
300 s tolerance even with a minute of clock skew; a moment usually has two usable tickets."""
MAX_TICKET_HORIZON = 7 * 86400
DEFAULT_TIMEOUT = 10.0
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
            with NodeClient(card, identity, clock, timeout) as client:
                res.body = fn(client)
        except VeladorError as exc:
            res.error = exc
        return res

    with ThreadPoolExecutor(max_workers=min(16, len(tasks))) as pool:
        return list(pool.map(one, tasks))


def _switch_policy(rec: CaseRecord) -> Policy:
    if rec.policy.switch is None or not rec.policy.nodes:
        raise PolicyError(
            f"case {rec.name} has no escrow nodes",
            hint="only cases created with --node have a switch",
        )
    return rec.policy


def _refuse_closed(rec: CaseRecord, action: str) -> None:
    if rec.status in ("destroyed", "released"):
        raise PolicyError(f"cannot {action}: case {rec.name} was {rec.status}")


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
) -> ArmReport:
    """Register the policy and each node's envelopes at every node not yet registered."""
    policy = _switch_policy(rec)
    _refuse_closed(rec, "arm")
    mark_arming(state, policy, clock.now())
    envelopes = state.envelopes_of(policy)
    regs = state.node_regs(policy)
    todo = [c for c in policy.nodes if regs.get(c.fingerprint, ("pending",))[0] != "registered"]
    by_fp = {c.fingerprint: c for c in policy.nodes}

    def register(client: NodeClient) -> dict[str, Any]:
        return client.register_case(policy, node_envelopes(policy, envelopes, client.card))

    results = fan_out(todo, identity, clock, register, timeout)
    now = clock.now()
    for r in results:
        card = by_fp[r.fingerprint]
        if r.ok and r.body is not None:
            state.set_node_reg(policy, card, "registered", None, now)
            state.record_view(policy.case_id, r.fingerprint, r.body)
        else:
            what = "unreachable" if r.unreachable else "refused"
            state.set_node_reg(policy, card, what, r.error.message if r.error else None, now)
    return ArmReport(
        rec.name,
        policy.case_id,
        results,
        state.node_regs(policy),
        {c.fingerprint: c.name for c in policy.nodes},
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


def switch_cases(state: LocalState, names: Iterable[str] = ()) -> list[CaseRecord]:
    """The cases a check-in covers: named ones, or every case with a live switch."""
    names = list(names)
    if names:
        recs = [state.case(n) for n in names]
        for r in recs:
            _switch_policy(r)
            _refuse_closed(r, "check in")
        return recs
    out = []
    for r in state.cases():
        st = arming_state(state, r)
        regs = state.node_regs(r.policy).values() if st == "arming" else ()
        if st == "armed" or any(reg == "registered" for reg, _ in regs):
            out.append(r)
    return out


# --- check-ins ------------------------------------------------------------------------------


def heartbeat_path(case_id: str) -> str:
    return f"/v1/cases/{case_id}/heartbeat"


def make_tickets(
    identity: Identity, node: Card, heartbeat: dict[str, Any], now: int, horizon: int
) -> list[list[Any]]:
    """[time, Authorization header] pairs for re-sending `heartbeat` to `node` later."""
    case_id = heartbeat["body"]["case_id"]
    body = canonical_json(heartbeat)
    end = now + min(max(horizon, TICKET_STEP), MAX_TICKET_HORIZON)
    return [
        [
            t,
            sign_request(
                identity.sign_key, node.sign_pk, "POST", heartbeat_path(case_id), body, t, case_id
            ),
        ]
        for t in range(now, end + 1, TICKET_STEP)
    ]


@dataclass
class CaseCheckin:
    case: str
    case_id: str
    seq: int
    results: list[NodeResult]

    @property
    def next_deadline(self) -> int | None:
        dl = [r.body["deadline"] for r in self.results if r.body and r.body.get("deadline")]
        return min(dl) if dl else None

    @property
    def reached(self) -> int:
        return sum(1 for r in self.results if r.ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "case_id": self.case_id,
            "seq": self.seq,
            "next_deadline": self.next_deadline,
            "nodes": [r.to_json() for r in self.results],
        }


def checkin(
    state: LocalState,
    identity: Identity,
    clock: Clock,
    cases: list[CaseRecord],
    timeout: float = DEFAULT_TIMEOUT,
) -> list[CaseCheckin]:
    """One signed heartbeat per case, sent to every registered node of every case in parallel.

    A duress identity (unlocked with the duress passphrase) seals the duress marker inside the
    heartbeat; nothing else differs, here or in what the nodes answer."""
    now = clock.now()
    plans = []
    tasks: list[tuple[Card, Callable[[NodeClient], dict[str, Any]]]] = []
    for rec in cases:
        policy = _switch_policy(rec)
        regs = state.node_regs(policy)
        targets = [c for c in policy.nodes if regs.get(c.fingerprint, ("",))[0] == "registered"]
        if not targets:
            raise PolicyError(
                f"case {rec.name} is not registered at any node yet",
                hint=f"run 'velador case arm {rec.name}' first",
            )
        seq = state.next_heartbeat_seq(policy.case_id, now)  # durable before it is signed
        hb = make_heartbeat(policy, identity.sign_key, seq, now, duress=identity.duress)
        plans.append((rec, policy, seq, hb, targets))
        tasks += [(c, lambda client, hb=hb: client.heartbeat(hb)) for c in targets]
    results = iter(run_parallel(tasks, identity, clock, timeout))
    out: list[CaseCheckin] = []
    for rec, policy, seq, hb, targets in plans:
        assert policy.switch is not None
        horizon = policy.switch.every + policy.switch.grace
        mine = [next(results) for _ in targets]
        for card, r in zip(targets, mine, strict=True):
            if r.ok and r.body is not None:
                state.unqueue(policy.case_id, r.fingerprint)
                state.record_view(policy.case_id, r.fingerprint, r.body)
            elif getattr(r.error, "code", None) == "stale_heartbeat":
                # A peer forwarded this heartbeat to the node before we reached it (gossip is
                # fast): the node has it. Show what its receipt would have said.
                state.unqueue(policy.case_id, r.fingerprint)
                r.error = None
                r.body = _cover_receipt(mine, policy, hb)
            elif identity.duress and not r.unreachable:
                # Under duress a node that acted on the marker (a "release" policy, possibly
                # told first by a peer's gossip) refuses the direct copy; the captor watching
                # the screen must see the same rows as for a normal check-in.
                r.error = None
                r.body = _cover_receipt(mine, policy, hb)
            elif r.unreachable:
                tickets = make_tickets(identity, card, hb, now, horizon)
                state.queue_heartbeat(policy.case_id, r.fingerprint, hb, tickets, now)
                r.queued = True
        out.append(CaseCheckin(rec.name, policy.case_id, seq, mine))
    return out


def _cover_receipt(results: list[NodeResult], policy: Policy, hb: dict[str, Any]) -> dict[str, Any]:
    """The receipt a node that already had the heartbeat would have sent.

    Never the node's status: after a duress check-in under a "release" policy the status is
    RELEASED while every receipt shows the normal cover, and a captor may be reading the screen.
    Receipts of one heartbeat agree across nodes, so another node's is used; with none, the
    deadline the nodes compute from the signed time (docs/protocol.md §5)."""
    for r in results:
        if r.body is not None and r.body.get("action") == "heartbeat":
            return dict(r.body, node=None)
    assert policy.switch is not None
    t = hb["body"]["time"]
    return {
        "state": "ARMED",
        "seq": hb["body"]["seq"],
        "deadline": t + policy.switch.every,
        "release_at": t + policy.switch.every + policy.switch.grace,
    }


def _post_with_ticket(client: NodeClient, heartbeat: dict[str, Any], header: str) -> dict[str, Any]:
    """POST an already-signed heartbeat with a pre-signed Authorization header."""
    case_id = heartbeat["body"]["case_id"]
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Authorization": header,
    }
    try:
        resp = client._http.request(
            "POST",
            client.base + heartbeat_path(case_id),
            content=canonical_json(heartbeat),
            headers=headers,
        )
    except httpx.HTTPError as exc:
        raise NodeError(f"node {client.name} is unreachable ({type(exc).__name__})") from exc
    body = client._verified(client._answer(resp), "receipt", case_id)
    if body.get("seq") != heartbeat["body"]["seq"]:
        raise NodeError(f"receipt from node {client.name} is for another heartbeat")
    return body


@dataclass
class Resent:
    case_id: str
    node: str
    seq: int
    outcome: str  # "delivered" | "superseded" | "refused" | "retry" | "expired" | "waiting"
    detail: str | None = None


def resend_queued(
    state: LocalState, clock: Clock, timeout: float = DEFAULT_TIMEOUT
) -> list[Resent]:
    """Re-send every queued heartbeat with a ticket valid now. Signs nothing."""
    rows = state.queued_heartbeats()
    out: list[Resent] = []
    now = clock.now()
    plans = []
    for row in rows:
        try:
            rec = state.case(row["case_id"])
            card = next(c for c in rec.policy.nodes if c.fingerprint == row["node"])
        except (VeladorError, StopIteration):
            state.unqueue(row["case_id"], row["node"])
            continue
        usable = [t for t in row["tickets"] if abs(t[0] - now) <= TOLERANCE - 60]
        later = [t for t in row["tickets"] if t[0] > now]
        if not usable:
            if not later:
                state.unqueue(row["case_id"], row["node"], row["seq"])
                out.append(Resent(row["case_id"], card.name, row["seq"], "expired"))
            else:
                out.append(Resent(row["case_id"], card.name, row["seq"], "waiting"))
            continue
        ticket = min(usable, key=lambda t: abs(t[0] - now))
        plans.append((row, card, ticket))

    def send(plan: tuple[dict[str, Any], Card, list[Any]]) -> tuple[Any, Any]:
        row, card, ticket = plan
        try:
            with NodeClient(card, None, clock, timeout) as client:
                return _post_with_ticket(client, row["heartbeat"], ticket[1]), None
        except VeladorError as exc:
            return None, exc

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(plans)))) as pool:
        answers = list(pool.map(send, plans))
    for (row, card, ticket), (body, err) in zip(plans, answers, strict=True):
        case_id, seq = row["case_id"], row["seq"]
        if err is None:
            state.unqueue(case_id, row["node"], seq)
            state.record_view(case_id, row["node"], body)
            out.append(Resent(case_id, card.name, seq, "delivered"))
        elif getattr(err, "code", None) == "stale_heartbeat":
            state.unqueue(case_id, row["node"], seq)
            out.append(Resent(case_id, card.name, seq, "superseded"))
        elif isinstance(err, NodeError) or getattr(err, "code", None) in (
            "replay",
            "unauthenticated",
        ):
            # Each ticket is used once: the node may have consumed its nonce before failing.
            left = [t for t in row["tickets"] if t != ticket]
            state.update_queued(case_id, row["node"], seq, left, err.message)
            out.append(Resent(case_id, card.name, seq, "retry", err.message))
        else:
            state.unqueue(case_id, row["node"], seq)
            out.append(Resent(case_id, card.name, seq, "refused", err.message))
    return out


# --- status and actions ---------------------------------------------------------------------

COMPARED = ("state", "seq", "policy_hash", "deadline", "release_at", "paused_until")


@dataclass
class CaseStatus:
    case: str
    case_id: str
    local: str
    policy_hash: str
    results: list[NodeResult]

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
        }


def gather_status(
    state: LocalState,
    identity: Identity,
    clock: Clock,
    rec: CaseRecord,
    timeout: float = DEFAULT_TIMEOUT,
) -> CaseStatus:
    policy = _switch_policy(rec)
    results = fan_out(policy.nodes, identity, clock, lambda c: c.status(policy.case_id), timeout)
    for r in results:
        if r.ok and r.body is not None:
            state.record_view(policy.case_id, r.fingerprint, r.body)
    return CaseStatus(rec.name, policy.case_id, arming_state(state, rec), policy.hash, results)


ACTIONS: dict[str, Callable[..., Callable[[NodeClient], dict[str, Any]]]] = {
    "pause": lambda cid, until: lambda c: c.pause(cid, until),
    "resume": lambda cid: lambda c: c.resume(cid),
    "release": lambda cid: lambda c: c.release_now(cid),
    "object": lambda cid: lambda c: c.object(cid),
    "destroy": lambda cid: lambda c: c.destroy(cid),
}


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
    policy = _switch_policy(rec)
    if action != "destroy":
        _refuse_closed(rec, action)
    regs = state.node_regs(policy)
    targets = [c for c in policy.nodes if regs.get(c.fingerprint, ("",))[0] == "registered"]
    if not targets:
        raise PolicyError(
            f"case {rec.name} is not registered at any node",
            hint=f"run 'velador case arm {rec.name}' first",
        )
    results = fan_out(targets, identity, clock, ACTIONS[action](policy.case_id, *args), timeout)
    done_state = {"release": "RELEASED", "destroy": "DESTROYED"}.get(action)
    for r in results:
        if done_state and r.error is not None and f"the case is {done_state}" in r.error.message:
            # Idempotent from the reporter's side: a re-run after a partial failure succeeds.
            r.error, r.body = None, {"state": done_state}
        if r.ok and r.body is not None and "time" in r.body:
            state.record_view(policy.case_id, r.fingerprint, r.body)
    if action in ("release", "destroy") and all(r.ok for r in results):
        state.set_case_status(policy.case_id, "released" if action == "release" else "destroyed")
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
    bad = "this case card is malformed"
    hint = "ask the reporter to send the line from 'velador case card' again"
    if not isinstance(text, str) or len(text.strip()) > 64 * 1024:
        raise FormatError(bad, hint=hint)
    text = text.strip()
    if not text.startswith(CASE_CARD_PREFIX):
        raise FormatError(
            "this is not a case card (it should start with 'velador:case:v1:')", hint=hint
        )
    try:
        body = parse_json(b64d(text[len(CASE_CARD_PREFIX) :], "case card"), "case card")
        if require(body, "v", int, "case card") != 1:
            raise FormatError("unsupported case card version")
        case_id = require(body, "case_id", str, "case card")
        policy_hash = require(body, "policy_hash", str, "case card")
        if not (
            8 <= len(case_id) <= 64 and set(case_id) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
        ):
            raise FormatError("bad case id")
        if len(policy_hash) != 64 or set(policy_hash) - set("0123456789abcdef"):
            raise FormatError("bad policy hash")
        nodes = [parse_card(n) for n in require(body, "nodes", list, "case card")]
        if not nodes or any(n.role != "node" or not n.url for n in nodes) or len(nodes) > 256:
            raise FormatError("bad node")
        stores = require(body, "stores", list, "case card")
        if not all(isinstance(s, str) and len(s) < 2048 for s in stores):
            raise FormatError("bad store")
        if set(body) != {"v", "case_id", "policy_hash", "nodes", "stores"}:
            raise FormatError("unknown fields")
    except FormatError as exc:
        raise FormatError(bad, hint=hint) from exc
    return CaseCard(case_id, policy_hash, tuple(nodes), tuple(stores), text)


# --- custody audit --------------------------------------------------------------------------


@dataclass
class AuditReport:
    case: str
    case_id: str
    nodes: list[dict[str, Any]]
    stores: list[dict[str, Any]]
    reasons: list[str]  # why the answer is "no" (empty: yes)
    warnings: list[str]  # problems that the other holders or replicas cover
    offline_shares: int

    @property
    def recoverable(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "case_id": self.case_id,
            "recoverable": self.recoverable,
            "reasons": self.reasons,
            "warnings": self.warnings,
            "nodes": self.nodes,
            "stores": self.stores,
            "offline_shares": self.offline_shares,
        }


def _enough(policy: Policy, healthy: set[str]) -> bool:
    """Do the holders in `healthy` (holder ids) meet the share layout's thresholds?"""
    groups_ok = 0
    for g, (k, _) in enumerate(policy.spec.groups):
        have = sum(1 for h in policy.holders if h.group == g and h.id in healthy)
        groups_ok += have >= k
    return groups_ok >= policy.spec.group_threshold


def _audit_nodes(
    state: LocalState, identity: Identity, clock: Clock, policy: Policy, timeout: float
) -> tuple[list[dict[str, Any]], set[str]]:
    envelopes = state.envelopes_of(policy)
    nonce = secrets.token_bytes(32)  # fresh: a node cannot answer from a digest it kept

    def challenge(client: NodeClient) -> dict[str, Any]:
        return {
            "proof": client.custody(policy.case_id, nonce),
            "status": client.status(policy.case_id),
        }

    results = fan_out(policy.nodes, identity, clock, challenge, timeout)
    healthy = {h.id for h in policy.holders if h.kind == "offline"}
    out = []
    for card, r in zip(policy.nodes, results, strict=True):
        mine = node_envelopes(policy, envelopes, card)
        problem = None
        node_state = None
        if not r.ok or r.body is None:
            problem = f"node {card.name} did not answer ({r.error.message if r.error else '?'})"
        else:
            proof, status = r.body["proof"], r.body["status"]
            node_state = status.get("state")
            state.record_view(policy.case_id, card.fingerprint, status)
            if node_state not in LIVE_STATES:
                problem = f"node {card.name} is {node_state}"
            elif proof.get("policy_hash") != policy.hash:
                problem = f"node {card.name} holds another version of the case policy"
            elif not mine:
                problem = f"this laptop has no record of node {card.name}'s envelopes"
            elif proof.get("digest") != custody_digest(nonce, mine):
                problem = (
                    f"node {card.name} does not hold its {len(mine)} envelope(s) intact "
                    f"(it holds {proof.get('envelopes')})"
                )
        if problem is None:
            healthy.update(h.id for h in policy.holders_of(card.sign_pk))
        out.append(
            {
                "node": card.name,
                "fingerprint": card.fingerprint,
                "ok": problem is None,
                "state": node_state,
                "problem": problem,
            }
        )
    return out, healthy


def _audit_stores(
    state: LocalState, policy: Policy, s3_endpoint: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Presence and size of every recorded object and snapshot in every store.

    Unlike `velador verify` this forgets nothing from the local index: an audit only looks."""
    from .objects import object_key, snapshot_key
    from .stores import open_store

    items = [
        (object_key(policy.case_id, o["oid"]), o["csize"]) for o in state.objects(policy.case_id)
    ]
    items += [
        (snapshot_key(policy.case_id, s["snap_id"]), s["csize"])
        for s in state.snapshots(policy.case_id)
    ]
    bad: dict[str, int] = {}
    out = []
    for url in policy.stores:
        missing: list[str] = []
        error = None
        try:
            store = open_store(url, s3_endpoint=s3_endpoint)
            for key, csize in items:
                size = store.size(key)
                if size is None or (csize and size != csize):
                    missing.append(key)
        except VeladorError as exc:
            error = exc.message
            missing = [k for k, _ in items]
        for key in missing:
            bad[key] = bad.get(key, 0) + 1
        out.append(
            {
                "store": url,
                "objects": len(items),
                "missing": missing[:20],
                "n_missing": len(missing),
                "error": error,
            }
        )
    lost = sorted(k for k, n in bad.items() if n >= len(policy.stores))
    return out, lost


def audit(
    state: LocalState,
    identity: Identity,
    clock: Clock,
    rec: CaseRecord,
    s3_endpoint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AuditReport:
    """ "If I went silent now, could my recipients recover everything?" with the reasons."""
    policy = _switch_policy(rec)
    nodes, healthy = _audit_nodes(state, identity, clock, policy, timeout)
    stores, lost = _audit_stores(state, policy, s3_endpoint)
    node_problems = [n["problem"] for n in nodes if n["problem"]]
    store_problems = [
        f"store {s['store']} "
        + (
            f"is unreachable ({s['error']})"
            if s["error"]
            else f"misses {s['n_missing']} object(s), e.g. {s['missing'][0]}"
        )
        for s in stores
        if s["n_missing"] or s["error"]
    ]
    reasons: list[str] = []
    warnings: list[str] = []
    if _enough(policy, healthy):
        warnings += node_problems
    else:
        n_ok = sum(1 for n in nodes if n["ok"])
        reasons.append(
            f"only {n_ok} of {len(nodes)} nodes hold their shares intact and live; the split is "
            f"{policy.spec.describe()}: " + "; ".join(node_problems)
        )
    if lost:
        reasons.append(
            f"{len(lost)} object(s) are in no store (e.g. {lost[0]}): " + "; ".join(store_problems)
        )
    else:
        warnings += store_problems
    return AuditReport(
        rec.name,
        policy.case_id,
        nodes,
        stores,
        reasons,
        warnings,
        sum(1 for h in policy.holders if h.kind == "offline"),
    )
