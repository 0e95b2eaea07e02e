"""Check-ins (docs/protocol.md §4.2 from the reporter's side): one signed heartbeat per case,
sent to every node in parallel; failures queued for `velador agent`.

The heartbeat sequence number is allocated and made durable before the heartbeat is signed
(LocalState.next_heartbeat_seq), so a crash can never make two heartbeats with one number.

A node that cannot be reached gets the heartbeat queued with *transport tickets*: Authorization
headers signed now for that node, that path and that body, stamped every TICKET_STEP seconds over
the time the heartbeat stays useful. The node accepts a request stamped within its tolerance
(300 s, docs/protocol.md §2.3) of its clock, so the agent can re-send the already-signed
heartbeat later without the passphrase and without ever being able to sign anything new. A
stolen ticket can only deliver the reporter's own old heartbeat to the node it names, which sets
the deadline from the heartbeat's signed time: no more than gossip between nodes would do.

Duress: a duress identity seals the duress marker inside the heartbeat and nothing else differs.
Rows the nodes answer differently because of the marker (a node that released on it refuses a
later copy) are shown with the cover receipt the other nodes sent, so the screen a captor watches
is the one a normal check-in gives.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vault.nodeproto.auth import TOLERANCE, sign_request
from vault.nodeproto.client import NodeClient
from vault.nodeproto.messages import make_heartbeat

from . import switch
from .cards import Card
from .clock import Clock
from .encoding import canonical_json
from .errors import N_, NodeError, PolicyError, VeladorError
from .identity import Identity
from .policy import Policy
from .released import ReleaseInfo
from .state import CaseRecord, LocalState
from .switch import DEFAULT_TIMEOUT, NodeResult, switch_policy

TICKET_STEP = 240
"""Seconds between transport tickets: any moment is within 120 s of one, well inside the node's
300 s tolerance even with a minute of clock skew; a moment usually has two usable tickets."""
MAX_TICKET_HORIZON = 7 * 86400


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
    warnings: list[str] = field(default_factory=list)
    """switch.coverage_warnings after this check-in: an unfinished rotation, missing nodes."""
    release: ReleaseInfo | None = None  # learned when some node refused (vault/released.py)

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
            "warnings": self.warnings,
            "release": self.release.to_json() if self.release else None,
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
        policy = switch_policy(rec)
        # Each node is addressed in the version it holds: a node that missed a rotation gets
        # a heartbeat naming the version it has, which every node version accepts, until
        # `velador case arm` finishes the rotation (issue 11, finding 2).
        forms = switch.node_forms(state, rec)
        if not forms:
            raise PolicyError(
                N_("case %(name)s is not registered at any node yet"),
                hint=N_("run 'velador case arm %(name)s' first"),
                name=rec.name,
            )
        seq = state.next_heartbeat_seq(policy.case_id, now)  # durable before it is signed
        docs: dict[str, dict[str, Any]] = {}
        targets = []
        for card, form in forms:
            if form.hash not in docs:
                docs[form.hash] = make_heartbeat(
                    form, identity.sign_key, seq, now, duress=identity.duress
                )
            targets.append((card, docs[form.hash]))
        plans.append((rec, policy, seq, docs.get(policy.hash), targets))
        tasks += [(c, lambda client, hb=hb: client.heartbeat(hb)) for c, hb in targets]
    results = iter(switch.run_parallel(tasks, identity, clock, timeout))
    out: list[CaseCheckin] = []
    for rec, policy, seq, main_hb, targets in plans:
        assert policy.switch is not None
        horizon = policy.switch.every + policy.switch.grace
        mine = [next(results) for _ in targets]
        for (card, hb), r in zip(targets, mine, strict=True):
            if r.ok and r.body is not None:
                state.unqueue(policy.case_id, r.fingerprint)
                state.record_view(policy.case_id, r.fingerprint, r.body)
                switch.note_node_version(state, policy, card, r.body.get("policy_hash"), now)
            elif getattr(r.error, "code", None) == "stale_heartbeat":
                # A peer forwarded this heartbeat to the node before we reached it (gossip is
                # fast): the node has it. Show what its receipt would have said.
                # Its view is recorded too: the agent reminds from the earliest deadline it
                # knows, and a view left at the previous deadline silenced every reminder.
                state.unqueue(policy.case_id, r.fingerprint)
                r.error = None
                r.body = _cover_receipt(mine, policy, main_hb or hb)
                state.record_view(policy.case_id, r.fingerprint, r.body)
            elif identity.duress and not r.unreachable:
                # Under duress a node that acted on the marker (a "release" policy, possibly
                # told first by a peer's gossip) refuses the direct copy; the captor watching
                # the screen must see the same rows as for a normal check-in.
                r.error = None
                r.body = _cover_receipt(mine, policy, main_hb or hb)
                state.record_view(policy.case_id, r.fingerprint, r.body)
            elif r.unreachable:
                tickets = make_tickets(identity, card, hb, now, horizon)
                state.queue_heartbeat(policy.case_id, r.fingerprint, hb, tickets, now)
                r.queued = True
        if (
            not identity.duress
            and rec.status in ("released", "destroyed")
            and any(r.ok for r in mine)
        ):
            # A node took the heartbeat: the case is live there, so its local "closed" came
            # from a cover shown under duress (switch.closed_unconfirmed). Take it back.
            state.set_case_status(policy.case_id, "active")
        warnings = switch.coverage_warnings(state, rec)
        out.append(CaseCheckin(rec.name, policy.case_id, seq, mine, warnings))
        if not identity.duress and any(not r.ok and not r.unreachable for r in mine):
            out[-1].release = rel = _learn_why(state, identity, clock, rec, timeout)
            if rel is not None and rel.complete:
                for r in mine:
                    r.queued = False
    return out


def _learn_why(
    state: LocalState, identity: Identity, clock: Clock, rec: CaseRecord, timeout: float
) -> ReleaseInfo | None:
    """A node refused the heartbeat: ask every node's status, which records a release (when,
    by which rule) so the check-in can say so instead of a bare refusal. Once the release is
    complete, queued copies of heartbeats are dropped: checking in no longer changes anything."""
    st = switch.gather_status(state, identity, clock, rec, timeout)
    if st.release is not None and st.release.complete:
        for card in rec.policy.nodes:
            state.unqueue(rec.case_id, card.fingerprint)
    return st.release


def _cover_receipt(results: list[NodeResult], policy: Policy, hb: dict[str, Any]) -> dict[str, Any]:
    """The receipt a node that already had the heartbeat would have sent.

    Never the node's status: after a duress check-in under a "release" policy the status is
    RELEASED while every receipt shows the normal cover, and a captor may be reading the screen.
    Receipts of one heartbeat agree across nodes, so another node's is used; with none, the
    deadline the nodes compute from the signed time (docs/protocol.md §5.2)."""
    for r in results:
        if r.body is not None and r.body.get("action") == "heartbeat":
            return dict(r.body, node=None)
    assert policy.switch is not None
    t = hb["body"]["time"]
    return {
        # The signed check-in time: without one, LocalState.record_view kept the previous view
        # (it never replaces a view with an older one) and the agent reminded from it.
        "time": t,
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
    answer = client.exchange(
        "POST", client.base + heartbeat_path(case_id), canonical_json(heartbeat), headers
    )
    body = client._verified(client._answer(*answer), "receipt", case_id)
    if body.get("seq") != heartbeat["body"]["seq"]:
        raise NodeError(N_("receipt from node %(node)s is for another heartbeat"), node=client.name)
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
    # Receipts of one heartbeat agree across nodes (the deadline runs from its signed time): a
    # node that already had it from a peer is recorded with another node's receipt, or the
    # agent would keep reminding from that node's previous deadline, or never again.
    receipts = {
        (row["case_id"], row["seq"]): body
        for (row, _, _), (body, err) in zip(plans, answers, strict=True)
        if err is None and body is not None
    }
    for (row, card, ticket), (body, err) in zip(plans, answers, strict=True):
        case_id, seq = row["case_id"], row["seq"]
        if err is None:
            state.unqueue(case_id, row["node"], seq)
            state.record_view(case_id, row["node"], body)
            out.append(Resent(case_id, card.name, seq, "delivered"))
        elif getattr(err, "code", None) == "stale_heartbeat":
            state.unqueue(case_id, row["node"], seq)
            if (case_id, seq) in receipts:
                state.record_view(case_id, row["node"], receipts[(case_id, seq)])
            else:
                # The node had it from a peer and no other node answered in this round: its
                # view follows from the heartbeat's signed time, or the agent kept reminding
                # of the previous deadline (a false "check in within 1h" after a check-in).
                policy = switch_policy(state.case(case_id))
                state.record_view(
                    case_id, row["node"], _cover_receipt([], policy, row["heartbeat"])
                )
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
