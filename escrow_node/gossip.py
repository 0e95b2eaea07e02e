"""Peer gossip (docs/protocol.md §4.3): forward heartbeats, and ask peers before releasing.

Forwarding is push through the outbox (channel "peer"), so it survives crashes and retries while
a peer is down. The pre-release sync is pull: when a case's grace period is over, the node asks
every peer for its latest heartbeat (GET /v1/cases/{id}/heartbeat) and applies a newer one before
deciding. A peer that does not answer within `peer_timeout` does not block the release: a release
must not be preventable by taking peers down.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vault.cards import Card
from vault.errors import PolicyError, VeladorError
from vault.nodeproto.client import NodeClient
from vault.nodeproto.messages import check_heartbeat
from vault.policy import Policy

log = logging.getLogger("velador.node.gossip")


def peer_client(svc: Any, card: Card) -> NodeClient:
    url = svc.config.peer_urls.get(card.fingerprint)
    return NodeClient(card, svc.identity, svc.clock, svc.config.peer_timeout, url=url)


def forward(svc: Any, card: Card, doc: dict[str, Any]) -> None:
    """Deliver one heartbeat to a peer. A peer that already has it (or a newer one) is done."""
    with peer_client(svc, card) as client:
        try:
            client.heartbeat(doc)
        except PolicyError as exc:
            if getattr(exc, "code", None) in ("stale_heartbeat", "replay", "conflict"):
                return
            raise


def newest_from_peers(svc: Any, policy: Policy) -> dict[str, Any] | None:
    peers = [c for c in policy.nodes if c.sign_pk != svc.identity.card.sign_pk]
    if not peers:
        return None

    def ask(card: Card) -> dict[str, Any] | None:
        try:
            with peer_client(svc, card) as client:
                return client.latest_heartbeat(policy.case_id)
        except VeladorError as exc:
            log.warning("pre-release sync: peer %s: %s", card.name, exc)
            return None

    best: dict[str, Any] | None = None
    best_seq = -1
    with ThreadPoolExecutor(max_workers=min(8, len(peers))) as pool:
        for doc in pool.map(ask, peers):
            if doc is None:
                continue
            try:
                hb = check_heartbeat(doc, policy)
            except VeladorError:
                log.warning("pre-release sync: a peer sent an invalid heartbeat; ignored")
                continue
            if hb.seq > best_seq:
                best, best_seq = doc, hb.seq
    return best
