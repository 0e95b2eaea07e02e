"""What the reporter's laptop knows about a release of one of their cases (docs/format.md §8).

A release happens at the nodes, usually while the reporter is silent; the laptop learns of it the
next time any command talks to a node (`status`, `checkin`, `audit`, `release now`). What it
learns is kept in the case's `extra` column under "release", so every view (`case list` offline
included) can say plainly that the case was released, when, and by which rule:

    {"released_at": unix seconds or null, "rule": "deadline" | "editors" | "reporter" | null,
     "nodes": [fingerprints of the nodes that said RELEASED], "total": number of nodes,
     "complete": whether those nodes' shares meet the split's thresholds, "learned": unix seconds}

Only a complete release closes the case locally (status "released"): while a lone node says
RELEASED and the others do not (a disagreement, or a node ahead of its peers), check-ins still go
to the others, and every view says what the released node said.

Under the duress passphrase nothing is learned: the views a captor watches must stay the views a
normal check-in gives (vault/switch.gather_status, vault/checkin).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .policy import Policy
from .state import CaseRecord, LocalState

RULES = ("deadline", "editors", "reporter")
"""The release rules a node names (docs/protocol.md §3.4 `release_reason`)."""


@dataclass
class ReleaseInfo:
    released_at: int | None
    rule: str | None
    nodes: list[str] = field(default_factory=list)  # fingerprints of nodes that said RELEASED
    total: int = 0
    complete: bool = False
    learned: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "released_at": self.released_at,
            "rule": self.rule,
            "nodes": list(self.nodes),
            "total": self.total,
            "complete": self.complete,
            "learned": self.learned,
        }

    @classmethod
    def from_json(cls, doc: Any) -> ReleaseInfo | None:
        if not isinstance(doc, dict):
            return None
        at, rule = doc.get("released_at"), doc.get("rule")
        nodes = [n for n in doc.get("nodes") or [] if isinstance(n, str)]
        return cls(
            at if isinstance(at, int) else None,
            rule if rule in RULES else None,
            nodes,
            int(doc.get("total") or 0),
            bool(doc.get("complete")),
            int(doc.get("learned") or 0),
        )


def meets_threshold(policy: Policy, node_fps: set[str]) -> bool:
    """Do the shares held by these nodes meet the split's group and member thresholds?"""
    held = {
        h.id
        for c in policy.nodes
        if c.fingerprint in node_fps
        for h in policy.holders_of(c.sign_pk)
    }
    groups_ok = 0
    for g, (k, _) in enumerate(policy.spec.groups):
        groups_ok += sum(1 for h in policy.holders if h.group == g and h.id in held) >= k
    return groups_ok >= policy.spec.group_threshold


def known_release(rec: CaseRecord) -> ReleaseInfo | None:
    """The release this laptop learned of earlier, if any (no network)."""
    return ReleaseInfo.from_json(rec.extra.get("release"))


def released_bodies(results: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(node fingerprint, answer body) of every node result that says RELEASED."""
    return [
        (r.fingerprint, r.body)
        for r in results
        if r.ok and r.body is not None and r.body.get("state") == "RELEASED"
    ]


def learn_release(
    state: LocalState,
    rec: CaseRecord,
    results: list[Any],
    now: int,
    rule: str | None = None,
    record: bool = True,
) -> ReleaseInfo | None:
    """Merge what these node answers say about a release into the local record and return it
    (None when no node ever said RELEASED). `rule` names the rule when the caller knows it (the
    reporter's own `release now`). `record=False` (under duress): the same answer, nothing
    written, so the normal passphrase later sees only what the nodes really did."""
    old = known_release(rec)
    found = released_bodies(results)
    if not found:
        return old
    policy = rec.policy
    nodes = set(old.nodes if old else ()) | {fp for fp, _ in found}
    times = [b.get("released_at") or b.get("time") for _, b in found]
    times = [t for t in times if isinstance(t, int)]
    if old and old.released_at:
        times.append(old.released_at)
    reasons = [b.get("release_reason") for _, b in found if b.get("release_reason") in RULES]
    info = ReleaseInfo(
        released_at=min(times) if times else None,
        rule=rule or (reasons[0] if reasons else None) or (old.rule if old else None),
        nodes=[c.fingerprint for c in policy.nodes if c.fingerprint in nodes],
        total=len(policy.nodes),
        complete=meets_threshold(policy, nodes),
        learned=old.learned if old else now,
    )
    if not record:
        return info
    state.set_case_extra(rec.case_id, "release", info.to_json())
    if info.complete and rec.status != "destroyed":
        state.set_case_status(rec.case_id, "released")
    return info
