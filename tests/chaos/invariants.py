"""The chaos invariants, as pure functions over read-only views of the nodes' databases.

Nothing here talks to a process: `read_node` reads one node's SQLite file (mode=ro) into a
`NodeView`, and every `check_*` function takes views plus the harness's own records (the
reporter's receipts, the receivers' deliveries) and returns the violations it finds. That keeps
each checker testable with fabricated rows (tests/chaos/test_chaos.py); a checker that cannot
fail proves nothing. The exact statements are in tests/chaos/harness.py's docstring.
"""

from __future__ import annotations

import collections
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vault.encoding import canonical_json


@dataclass(frozen=True)
class Violation:
    invariant: str  # "a" .. "f", as in the harness docstring
    text: str

    def __str__(self) -> str:
        return f"({self.invariant}) {self.text}"


@dataclass(frozen=True)
class Rules:
    every: int
    grace: int
    reminders: int  # number of reminder offsets in the policy


@dataclass
class CaseView:
    case_id: str
    state: str
    seq: int
    last_beat: int
    registered: int
    released_at: int | None
    release_reason: str | None
    next_wake: int | None
    hb_seq: int = 0
    hb_time: int | None = None
    """Signed time of the newest heartbeat the node holds (what it serves to a peer's sync)."""
    hb_hashes: set[str] = field(default_factory=set)
    """Hashes of every heartbeat the node's audit log says it applied."""
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    notify: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    """(event, audience) -> how many times the audit log says it was notified."""
    withheld: set[tuple[str, str]] = field(default_factory=set)
    """(event, audience) the node withheld under a duress cover (audit entries' `withheld`):
    the reporter is told nothing while a captor may hold their devices (protocol §4.4)."""


@dataclass(frozen=True)
class OutboxRow:
    node: str
    key: str
    case_id: str
    channel: str
    target: str
    event: str
    deadline: int | None
    notice_node: str
    delivered: bool
    failed: bool


@dataclass
class NodeView:
    name: str
    cases: dict[str, CaseView]
    outbox: list[OutboxRow]


@dataclass(frozen=True)
class Ack:
    """A receipt the reporter got: node `node` acknowledged heartbeat `seq` (signed `time`)."""

    node: str
    case_id: str
    seq: int
    time: int
    ref: str
    order: int
    """Harness sequence number at which the receipt arrived (to compare with snapshots)."""


class AuditCache:
    """Incremental reader of one node's audit table (append-only; the CLI verifies the chain)
    and of its outbox notices (a row's payload never changes once written)."""

    def __init__(self) -> None:
        self.last = 0
        self.notices: dict[str, dict[str, Any]] = {}
        self.synced_heartbeats = 0
        """Heartbeats this node applied because its pre-release sync found them at a peer."""
        self.hb_hashes: dict[str, set[str]] = collections.defaultdict(set)
        self.notify: dict[str, collections.Counter[tuple[str, str]]] = collections.defaultdict(
            collections.Counter
        )
        self.withheld: dict[str, set[tuple[str, str]]] = collections.defaultdict(set)

    def update(self, conn: sqlite3.Connection) -> None:
        for seq, case_id, event, detail in conn.execute(
            "SELECT seq, case_id, event, detail FROM audit WHERE seq > ? ORDER BY seq",
            (self.last,),
        ):
            self.last = seq
            d = json.loads(detail)
            if event == "heartbeat" and "heartbeat" in d:
                self.hb_hashes[case_id].add(d["heartbeat"])
                if d.get("by") == {"node": "pre-release-sync"}:
                    self.synced_heartbeats += 1
            for eff in d.get("effects", []) if isinstance(d, dict) else []:
                parts = eff.split(":")
                if parts[0] == "notify" and len(parts) == 3:
                    self.notify[case_id][(parts[1], parts[2])] += 1
            for eff in d.get("withheld", []) if isinstance(d, dict) else []:
                parts = eff.split(":")
                if parts[0] == "notify" and len(parts) == 3:
                    self.withheld[case_id].add((parts[1], parts[2]))


def read_node(name: str, conn: sqlite3.Connection, cache: AuditCache) -> NodeView:
    """One consistent snapshot: every SELECT runs inside one read transaction, so a commit the
    node makes meanwhile is seen entirely (audit entry and outbox rows) or not at all."""
    conn.execute("BEGIN")
    try:
        return _read_node(name, conn, cache)
    finally:
        conn.execute("COMMIT")


def _read_node(name: str, conn: sqlite3.Connection, cache: AuditCache) -> NodeView:
    cache.update(conn)
    cases: dict[str, CaseView] = {}
    for r in conn.execute("SELECT * FROM cases"):
        hb = json.loads(r["last_heartbeat"]) if r["last_heartbeat"] else None
        cases[r["case_id"]] = CaseView(
            case_id=r["case_id"],
            state=r["state"],
            seq=r["seq"],
            last_beat=r["last_beat"],
            registered=r["registered"],
            released_at=r["released_at"],
            release_reason=r["release_reason"],
            next_wake=r["next_wake"],
            hb_seq=hb["body"]["seq"] if hb else 0,
            hb_time=hb["body"]["time"] if hb else None,
            hb_hashes=set(cache.hb_hashes.get(r["case_id"], ())),
            notify=collections.Counter(cache.notify.get(r["case_id"], {})),
            withheld=set(cache.withheld.get(r["case_id"], ())),
        )
    for r in conn.execute("SELECT case_id, envelope FROM envelopes ORDER BY holder, recipient"):
        if r[0] in cases:
            cases[r[0]].envelopes.append(json.loads(r[1]))
    outbox = []
    for r in conn.execute(
        "SELECT key, case_id, channel, target, delivered, failed FROM outbox"
        " WHERE channel IN ('email', 'webhook')"
    ):
        notice = cache.notices.get(r["key"])
        if notice is None:
            payload = conn.execute("SELECT payload FROM outbox WHERE key = ?", (r["key"],))
            notice = cache.notices[r["key"]] = json.loads(payload.fetchone()[0])["notice"]["body"]
        outbox.append(
            OutboxRow(
                node=name,
                key=r["key"],
                case_id=r["case_id"],
                channel=r["channel"],
                target=r["target"],
                event=notice["event"],
                deadline=notice.get("deadline"),
                notice_node=notice["node"],
                delivered=r["delivered"] is not None,
                failed=r["failed"] is not None,
            )
        )
    return NodeView(name, cases, outbox)


# --- (a) no false release ----------------------------------------------------------------------


@dataclass(frozen=True)
class PeerKnowledge:
    """What peer P held before the release could have happened, and whether N could ask it."""

    seq: int
    time: int | None
    reachable: bool
    """Alive for the whole window, and N's link to it clean (up or slow)."""
    sync_failed: bool = False
    """N's log says its pre-release request to P failed (e.g. P too slow to answer in time)."""


def check_release(
    node: str,
    case: CaseView,
    rules: Rules,
    peers: dict[str, PeerKnowledge],
    acks: Iterable[Ack],
) -> list[Violation]:
    """Called once, when `node` is first seen RELEASED for `case`."""
    out: list[Violation] = []
    r = case.released_at
    cid = case.case_id
    if r is None:
        return [Violation("a", f"{node} {cid}: RELEASED without a release time")]
    if case.release_reason != "deadline":
        out.append(Violation("a", f"{node} {cid}: released for {case.release_reason!r}"))
    due = case.last_beat + rules.every + rules.grace
    if r < due:
        out.append(
            Violation(
                "a",
                f"{node} {cid}: released at {r}, before its own last check-in {case.last_beat}"
                f" + every + grace = {due}",
            )
        )
    for ack in acks:
        if ack.node == node and ack.case_id == cid and ack.time + rules.every + rules.grace > r:
            out.append(
                Violation(
                    "a",
                    f"{node} {cid}: released at {r} although it acknowledged heartbeat "
                    f"{ack.seq} signed at {ack.time}",
                )
            )
    for peer, k in sorted(peers.items()):
        if not k.reachable or k.sync_failed or k.time is None or k.seq <= case.seq:
            continue
        if k.time + rules.every + rules.grace > r:
            out.append(
                Violation(
                    "a",
                    f"{node} {cid}: released at {r} while reachable peer {peer} held heartbeat "
                    f"{k.seq} signed at {k.time} (the pre-release sync must have found it)",
                )
            )
    return out


# --- (b) release within the bound once the reporter stops --------------------------------------


def check_liveness(
    node: str, case: CaseView | None, clock: int, t_last: int, rules: Rules
) -> list[Violation]:
    """`node` is alive and settled at `clock`; the reporter's newest heartbeat is `t_last`."""
    if case is None:
        return [Violation("b", f"{node}: lost the case entirely")]
    due = max(t_last, case.registered) + rules.every + rules.grace
    if clock >= due and case.state != "RELEASED":
        return [
            Violation(
                "b",
                f"{node} {case.case_id}: still {case.state} at {clock}; the reporter's last "
                f"check-in was {t_last}, so it was due to release at {due}",
            )
        ]
    return []


# --- (c) acknowledged heartbeats survive -------------------------------------------------------


def check_acks(node: str, view: NodeView, acks: Iterable[Ack]) -> tuple[int, list[Violation]]:
    n = 0
    out = []
    for ack in acks:
        if ack.node != node:
            continue
        n += 1
        case = view.cases.get(ack.case_id)
        if case is None:
            out.append(Violation("c", f"{node} acknowledged {ack.case_id} but lost the case"))
            continue
        if case.seq < ack.seq:
            out.append(
                Violation(
                    "c",
                    f"{node} {ack.case_id}: acknowledged heartbeat {ack.seq} but stores seq "
                    f"{case.seq}",
                )
            )
        if ack.ref not in case.hb_hashes:
            out.append(
                Violation(
                    "c",
                    f"{node} {ack.case_id}: acknowledged heartbeat {ack.seq} ({ack.ref[:16]}) "
                    "has no heartbeat entry in its audit log",
                )
            )
    return n, out


# --- (d) envelopes ----------------------------------------------------------------------------


def check_envelopes(
    node: str, case: CaseView | None, expected: list[dict[str, Any]]
) -> list[Violation]:
    if case is None:
        return [Violation("d", f"{node}: lost a case and its envelopes")]
    order = sorted(expected, key=lambda e: (e["body"]["holder"], e["body"]["recipient"]))
    if canonical_json(case.envelopes) != canonical_json(order):
        return [
            Violation(
                "d",
                f"{node} {case.case_id}: holds {len(case.envelopes)} envelope(s) that differ from "
                f"the {len(order)} registered",
            )
        ]
    return []


# --- (e) notifications ------------------------------------------------------------------------


def event_identity(row: OutboxRow, rules: Rules) -> tuple[tuple[Any, ...], int]:
    """The event a delivery announces, and how many distinct notices it may legitimately have.

    A node sends `released` once per case, `overdue` and `checked_in` once per deadline, and at
    most one `reminder` per reminder offset per deadline (several offsets falling due together
    give one).
    """
    base = (row.notice_node, row.case_id, row.event, row.channel, row.target)
    if row.event == "released":
        return base, 1
    if row.event in ("overdue", "checked_in"):
        return (*base, row.deadline), 1
    if row.event == "reminder":
        return (*base, row.deadline), rules.reminders
    return (*base, row.key), 1


def check_notifications(
    views: Iterable[NodeView],
    received: collections.Counter[str],
    rules_of: dict[str, Rules],
    targets_of: dict[str, dict[str, list[tuple[str, str]]]],
    complete: set[str],
    received_before: collections.Counter[str] | None = None,
) -> tuple[int, list[Violation]]:
    """(e) over every node's outbox and every delivery the receivers saw.

    The nodes keep working while they are read, so the receivers are read twice:
    `received_before` before the views (a delivery seen then was queued before the views were
    read) and `received` after them (a row the views show as delivered had arrived by then).
    rules_of / targets_of: per case id, its rules and audience -> [(channel, target)].
    complete: cases whose deliveries must all have arrived by now.
    """
    if received_before is None:
        received_before = received
    out: list[Violation] = []
    n = 0
    rows: list[OutboxRow] = []
    for view in views:
        rows += view.outbox
        for cid, case in view.cases.items():
            if cid not in targets_of:
                continue
            # Every notification the audit log records is queued for every address: nothing is
            # lost between the state change and the outbox (they share one transaction).
            want: collections.Counter[tuple[str, str, str]] = collections.Counter()
            for (event, audience), times in case.notify.items():
                for channel, target in targets_of[cid].get(audience, []):
                    want[(event, channel, target)] += times
            got = collections.Counter(
                (r.event, r.channel, r.target) for r in view.outbox if r.case_id == cid
            )
            n += 1
            if want != got:
                out.append(
                    Violation(
                        "e",
                        f"{view.name} {cid}: the audit log's notifications {dict(want - got)} "
                        f"are not in the outbox, or the outbox has extra {dict(got - want)}",
                    )
                )
    keys = {r.key for r in rows}
    for key in received_before:
        n += 1
        if key not in keys:
            out.append(Violation("e", f"a delivery {key!r} arrived that no node queued"))
    groups: dict[tuple[Any, ...], set[str]] = collections.defaultdict(set)
    limit: dict[tuple[Any, ...], int] = {}
    for r in rows:
        n += 1
        if r.case_id in rules_of:
            ident, most = event_identity(r, rules_of[r.case_id])
            groups[ident].add(r.key)
            limit[ident] = most
        if r.failed:
            out.append(Violation("e", f"{r.node}: delivery {r.key} gave up (failed)"))
        if r.delivered and received[r.key] == 0:
            out.append(
                Violation("e", f"{r.node}: delivery {r.key} is marked delivered but never arrived")
            )
        if r.case_id in complete and received[r.key] == 0:
            out.append(Violation("e", f"{r.node}: {r.event} to {r.target} ({r.key}) never arrived"))
    for ident, ks in groups.items():
        n += 1
        if len(ks) > limit[ident]:
            out.append(
                Violation(
                    "e",
                    f"event {ident} was sent as {len(ks)} distinct notices "
                    f"(at most {limit[ident]}): {sorted(ks)}",
                )
            )
    return n, out


def released_notices_complete(
    views: Iterable[NodeView], case_id: str, targets: dict[str, list[tuple[str, str]]]
) -> list[Violation]:
    """Expected independently of the audit log: every node that released the case at its
    deadline queued `released` for every address of every audience, and before it `overdue` for
    the reporter and the editors (a deadline release always passes through OVERDUE)."""
    want = {
        "released": ("recipients", "editors", "reporter"),
        "overdue": ("editors", "reporter"),
    }
    out = []
    for view in views:
        case = view.cases.get(case_id)
        if case is None or case.state != "RELEASED":
            continue
        for event, audiences in want.items():
            if event == "overdue" and case.release_reason != "deadline":
                continue
            have = {
                (r.channel, r.target)
                for r in view.outbox
                if r.case_id == case_id and r.event == event
            }
            for audience in audiences:
                if (event, audience) in case.withheld:
                    continue  # withheld under a duress cover, and recorded as such
                for ct in targets.get(audience, []):
                    if ct not in have:
                        out.append(
                            Violation("e", f"{view.name} {case_id}: no {event!r} notice to {ct[1]}")
                        )
    return out
