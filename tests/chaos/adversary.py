"""Adversarial faults of the chaos harness (issue 11): hostile registrants, duress check-ins
and their tells, and the checks that go with a node whose clock jumped ahead.

Hostile peers that drip, stall, answer without end or answer garbage are proxy link modes
(tests/chaos/proxy.py, HOSTILE); this module holds what is not a link:

- A *tarpit*: a proxy link whose mode is always `drip`. Fake node cards point at it, and a
  stranger registers cases naming those fake nodes next to real ones (as anyone can where
  registration is open) and subscribes a webhook to it. The real nodes must still release every
  other case on time: their pre-release sync and their outbox must give up on the tarpit within
  their own deadlines.
- Duress check-ins: the reporter sometimes checks in with the duress passphrase (policy duress =
  "alert"). What anybody without the editors' keys can see must not change: the receipt (same
  fields, same state, same promised deadline as a normal check-in), the unauthenticated
  endpoints (/v1/health and /v1/card, less their clock), and /metrics must not be served on the
  public port at all.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.node.builders import make_world, person
from vault.errors import VeladorError
from vault.nodeproto.client import NodeClient

from . import invariants as inv

VOLATILE = ("time",)
"""Fields of the unauthenticated answers that change on their own (the node's clock)."""


@dataclass
class Tarpit:
    url: str
    cards: list[Any] = field(default_factory=list)


def make_tarpit(root: Path, url: str, n: int = 2) -> Tarpit:
    """Fake node cards whose URL is the tarpit; their keys are real, so envelopes seal to them."""
    tp = Tarpit(url)
    for i in range(n):
        ident = person(root / f"fake-node-{i}", f"fake-node-{i}", "node", url=url)
        tp.cards.append(ident.card)
    return tp


def register_hostile_case(
    root: Path, nodes: dict[str, Any], alive: list[str], tarpit: Tarpit, clock: Any,
    people: dict[str, Any], every: int, grace: int,
) -> tuple[str | None, int]:  # fmt: skip
    """A stranger registers a case at two live nodes naming two tarpit nodes; returns
    (case id or None, how many nodes accepted it)."""
    real = [nodes[n] for n in alive[:2]]
    cards = [n.card for n in real] + tarpit.cards
    w = make_world(
        root, cards, every=every, grace=grace, remind=(300,), threshold=2,
        created=clock.now(), people=people, n_editors=1, quorum=1, n_recipients=1,
    )  # fmt: skip
    accepted = 0
    for node in real:
        try:
            with NodeClient(node.card, w.reporter, clock, 10.0, url=node.url) as c:
                c.register_case(w.policy, w.envs_for(node.card))
                accepted += 1
                # A webhook at the tarpit: deliveries to it stall (outbox fairness), or are
                # refused outright where the node forbids such targets.
                with contextlib.suppress(VeladorError):
                    c.subscribe(w.policy.case_id, "webhook", tarpit.url + "/hook")
        except VeladorError:
            continue  # registration closed to strangers: refused, as it may be
    return (w.policy.case_id if accepted else None), accepted


def public_view(url: str) -> dict[str, Any]:
    """What anybody can read from a node without a key (less its clock)."""
    out: dict[str, Any] = {}
    for path in ("/v1/health", "/v1/card"):
        r = httpx.get(url + path, timeout=10.0)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        out[path] = (r.status_code, {k: v for k, v in body.items() if k not in VOLATILE})
    m = httpx.get(url + "/metrics", timeout=10.0)
    out["/metrics"] = (m.status_code, "velador_node_" in m.text)
    return out


def check_public_views(
    node: str, before: dict[str, Any], after: dict[str, Any]
) -> list[inv.Violation]:
    """(h) No tell of duress on the unauthenticated endpoints, and no metrics on the public port."""
    out = []
    if before != after:
        out.append(inv.Violation("h", f"{node}: public answers changed over a duress check-in"))
    status, has_metrics = after["/metrics"]
    if status == 200 and has_metrics:
        out.append(inv.Violation("h", f"{node}: /metrics is served on the public port"))
    return out


def check_receipt_alike(
    node: str, receipt: dict[str, Any], normal_keys: frozenset[str] | None, now: int, every: int
) -> list[inv.Violation]:
    """(h) A duress receipt has the fields of a normal one and promises the normal deadline."""
    out = []
    if normal_keys is not None and frozenset(receipt) != normal_keys:
        out.append(inv.Violation("h", f"{node}: a duress receipt has other fields: {receipt}"))
    if receipt.get("state") not in ("ARMED", "REMINDED", "OVERDUE", "PAUSED"):
        out.append(
            inv.Violation("h", f"{node}: a duress receipt shows state {receipt.get('state')}")
        )
    if receipt.get("state") in ("ARMED", "REMINDED", "OVERDUE") and (
        receipt.get("deadline", 0) < now + every
    ):
        out.append(inv.Violation("h", f"{node}: a duress receipt promises less time: {receipt}"))
    return out


def check_jumped_release(
    node: str, case_id: str, reporter_stopped: bool, reachable_peers: int, peers: int
) -> list[inv.Violation]:
    """(g) A node whose clock jumped ahead of its peers must not release a case whose reporter
    still checks in while it could ask a majority of its peers for the time."""
    if reporter_stopped or reachable_peers * 2 <= peers:
        return []
    return [
        inv.Violation(
            "g",
            f"{node} released {case_id} on a clock days ahead of {reachable_peers} reachable "
            f"peer(s) while the reporter checks in",
        )
    ]
