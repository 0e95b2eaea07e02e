"""`velador audit`: "if I went silent now, could my recipients recover everything?"

Every node gets a proof-of-custody challenge with a fresh random nonce (docs/protocol.md §3.5)
and must answer with BLAKE2b(label || nonce || its envelopes), which this laptop recomputes over the
envelopes it made (`messages.custody_digest`); a node that lost, altered or swapped an envelope
cannot answer right, and a fresh nonce stops it answering from a digest it kept. Every store is
checked for every object and snapshot the local index records (sizes only: the reporter cannot
decrypt), and copies that the last `velador verify --deep` found damaged count as missing until
`verify --repair` or a clean deep check clears them. The answer is "no" when the healthy share
holders no longer meet the split's thresholds, when some object is in no store, or when the case
holds nothing yet (recipients would recover an empty case); problems that other holders or
replicas cover are warnings.

Reasons, warnings and problems are `Note`s: English strings (what --json and logs carry) that
keep their marked template and values, so the CLI can say them in the reader's language.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from vault.nodeproto.client import NodeClient
from vault.nodeproto.messages import custody_digest

from . import switch
from .clock import Clock
from .errors import N_, Note, VeladorError
from .identity import Identity
from .policy import Policy
from .released import ReleaseInfo, learn_release
from .shares import ShareSpec
from .state import CaseRecord, LocalState
from .switch import DEFAULT_TIMEOUT, LIVE_STATES, node_envelopes, switch_policy


def split_note(spec: ShareSpec) -> Note:
    """How the key is split, as ShareSpec.describe() says it."""
    if len(spec.groups) == 1:
        k, n = spec.groups[0]
        return Note(N_("%(k)d of %(n)d"), k=k, n=n)
    parts = [Note(N_("%(k)d of %(n)d"), k=k, n=n) for k, n in spec.groups]
    return Note(
        N_("%(k)d of the groups (%(parts)s)"),
        k=spec.group_threshold,
        # "%(p0)s, %(p1)s": not a catalog message, so only the parts are translated.
        parts=Note(
            ", ".join(f"%(p{i})s" for i in range(len(parts))),
            **{f"p{i}": p for i, p in enumerate(parts)},
        ),
    )


@dataclass
class AuditReport:
    case: str
    case_id: str
    nodes: list[dict[str, Any]]
    stores: list[dict[str, Any]]
    reasons: list[str]  # why the answer is "no" (empty: yes)
    warnings: list[str]  # problems that the other holders or replicas cover
    offline_shares: int
    release: ReleaseInfo | None = None  # the nodes already released (vault/released.py)

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
            "release": self.release.to_json() if self.release else None,
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
) -> tuple[list[dict[str, Any]], set[str], list[switch.NodeResult]]:
    envelopes = state.envelopes_of(policy, identity.box_key)
    nonce = secrets.token_bytes(32)  # fresh: a node cannot answer from a digest it kept

    def challenge(client: NodeClient) -> dict[str, Any]:
        return {
            "proof": client.custody(policy.case_id, nonce),
            "status": client.status(policy.case_id),
        }

    results = switch.fan_out(policy.nodes, identity, clock, challenge, timeout)
    healthy = {h.id for h in policy.holders if h.kind == "offline"}
    out = []
    for card, r in zip(policy.nodes, results, strict=True):
        mine = node_envelopes(policy, envelopes, card)
        problem = None
        node_state = None
        held = None  # envelopes the node's proof says it holds
        if not r.ok or r.body is None:
            problem = Note(
                N_("node %(node)s did not answer (%(error)s)"),
                node=card.name,
                error=Note.of(r.error),
            )
        else:
            proof, status = r.body["proof"], r.body["status"]
            node_state = status.get("state")
            held = proof.get("envelopes")
            if not identity.duress:  # duress answers come from the nodes' cover: not kept
                state.record_view(policy.case_id, card.fingerprint, status)
            if node_state not in LIVE_STATES:
                problem = Note(
                    N_("node %(node)s is %(state)s"), node=card.name, state=Note(str(node_state))
                )
            elif proof.get("policy_hash") != policy.hash:
                problem = Note(
                    N_("node %(node)s holds another version of the case policy"), node=card.name
                )
            elif not mine:
                problem = Note(
                    N_("this laptop has no record of node %(node)s's envelopes"), node=card.name
                )
            elif proof.get("digest") != custody_digest(nonce, mine):
                problem = Note(
                    N_(
                        "node %(node)s does not hold its %(n)d envelope(s) intact "
                        "(it holds %(held)s)"
                    ),
                    node=card.name,
                    n=len(mine),
                    held=proof.get("envelopes"),
                )
        if problem is None:
            healthy.update(h.id for h in policy.holders_of(card.sign_pk))
        out.append(
            {
                "node": card.name,
                "fingerprint": card.fingerprint,
                "ok": problem is None,
                "state": node_state,
                "envelopes": held,
                "problem": problem,
            }
        )
    statuses = [
        switch.NodeResult(r.node, r.fingerprint, body=r.body["status"] if r.body else None)
        for r in results
    ]
    return out, healthy, statuses


def _audit_stores(
    state: LocalState, policy: Policy, s3_endpoint: str | None, damaged: dict[str, list[str]]
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
        known_bad = set(damaged.get(url, ()))
        try:
            store = open_store(url, s3_endpoint=s3_endpoint)
            for key, csize in items:
                size = store.size(key)
                if size is None or (csize and size != csize) or key in known_bad:
                    missing.append(key)
        except VeladorError as exc:
            error = Note.of(exc)
            missing = [k for k, _ in items]
        for key in missing:
            bad[key] = bad.get(key, 0) + 1
        out.append(
            {
                "store": url,
                "objects": len(items),
                "missing": missing[:20],
                "n_missing": len(missing),
                "n_damaged": len(known_bad & set(missing)),
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
    from .verify import known_damage

    policy = switch_policy(rec)
    nodes, healthy, statuses = _audit_nodes(state, identity, clock, policy, timeout)
    # Under duress the nodes answered from their cover: shown alike, nothing recorded.
    release = learn_release(state, rec, statuses, clock.now(), record=not identity.duress)
    if release is not None and release.complete:
        # The shares are out: the recipients hold them. Whether they can read everything now
        # depends on the stores alone.
        healthy = {h.id for h in policy.holders}
    stores, lost = _audit_stores(state, policy, s3_endpoint, known_damage(rec))
    released = release is not None and release.complete
    node_problems = [
        n["problem"] for n in nodes if n["problem"] and not (released and n["state"] == "RELEASED")
    ]
    store_problems = [_store_problem(s) for s in stores if s["n_missing"] or s["error"]]
    reasons: list[str] = []
    warnings: list[str] = []
    if _enough(policy, healthy):
        warnings += node_problems
    else:
        n_ok = sum(1 for n in nodes if n["ok"])
        reasons.append(
            Note(
                N_(
                    "only %(ok)d of %(total)d nodes hold their shares intact and live; the split "
                    "is %(split)s: %(problems)s"
                ),
                ok=n_ok,
                total=len(nodes),
                split=split_note(policy.spec),
                problems=node_problems,
            )
        )
    if not state.snapshots(policy.case_id):
        reasons.append(Note(N_("the case holds nothing yet: no deposit has been made")))
    if lost:
        reasons.append(
            Note(
                N_("%(n)d object(s) are in no store (e.g. %(key)s): %(problems)s"),
                n=len(lost),
                key=lost[0],
                problems=store_problems,
            )
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
        release,
    )


def _store_problem(s: dict[str, Any]) -> Note:
    if s["error"]:
        return Note(
            N_("store %(store)s is unreachable (%(error)s)"), store=s["store"], error=s["error"]
        )
    if s["n_damaged"]:
        return Note(
            N_(
                "store %(store)s misses %(n)d object(s), e.g. %(key)s (%(damaged)d found damaged "
                "by 'velador verify --deep')"
            ),
            store=s["store"],
            n=s["n_missing"],
            key=s["missing"][0],
            damaged=s["n_damaged"],
        )
    return Note(
        N_("store %(store)s misses %(n)d object(s), e.g. %(key)s"),
        store=s["store"],
        n=s["n_missing"],
        key=s["missing"][0],
    )
