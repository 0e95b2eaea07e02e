"""Peer gossip (docs/protocol.md §4.3): forward heartbeats, and ask peers before releasing.

Forwarding is push through the outbox (channel "peer"), so it survives crashes and retries while
a peer is down. The pre-release sync is pull: when a case's grace period is over, the node asks
every peer for its latest heartbeat (GET /v1/cases/{id}/heartbeat) and applies a newer one before
deciding. A peer that does not answer completely within `peer_timeout` (wall clock, however
slowly it drips: vault.nodeproto.transport) does not block the release: a release must not be
preventable by taking peers down, or by naming a peer that never finishes an answer.

`SlowPeers` keeps one hostile peer from costing a deadline per case: after a peer ran out of
time (or sent an oversized answer) it is "slow" for SLOW_COOLDOWN seconds, during which at most
one request to it is in flight (a probe); other syncs skip it at once, as if it were down. A
peer that answers again is trusted again at once (docs/threat-model.md, "Slow peers").

Outbound connections go through [network] proxy when it is set; onion peers need it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vault.cards import Card
from vault.errors import NodeError, PolicyError, VeladorError
from vault.nodeproto import transport
from vault.nodeproto.client import NodeClient
from vault.nodeproto.messages import check_heartbeat
from vault.policy import Policy

log = logging.getLogger("velador.node.gossip")
SLOW_COOLDOWN = 60.0
MAX_ASKS_PER_CASE = 8
CASE_SYNC_TIMEOUTS = 2
"""The sync of one case takes at most this many `peer_timeout`s, however many peers it names."""


def peer_client(svc: Any, card: Card) -> NodeClient:
    url = svc.config.peer_urls.get(card.fingerprint)
    return NodeClient(
        card,
        svc.identity,
        svc.clock,
        svc.config.peer_timeout,
        url=url,
        proxy=getattr(svc.config, "proxy", None),
    )


def peer_key(svc: Any, card: Card) -> str:
    """The key SlowPeers uses for a peer: the base URL its client talks to."""
    url = svc.config.peer_urls.get(card.fingerprint) or card.url or ""
    return url.rstrip("/")


def forward(svc: Any, card: Card, doc: dict[str, Any]) -> None:
    """Deliver one heartbeat to a peer. A peer that already has it (or a newer one) is done."""
    with peer_client(svc, card) as client:
        try:
            client.heartbeat(doc)
        except PolicyError as exc:
            if getattr(exc, "code", None) in ("stale_heartbeat", "replay", "conflict"):
                return
            raise


def ran_out(exc: BaseException) -> bool:
    """Whether a NodeError came from a peer that was too slow or too large (not just down)."""
    return isinstance(exc, NodeError) and isinstance(
        exc.__cause__, transport.DeadlineExceeded | transport.AnswerTooLarge
    )


class SlowPeers:
    """Peers that recently ran out of time, keyed by URL; see the module docstring."""

    def __init__(self, cooldown: float = SLOW_COOLDOWN) -> None:
        self.cooldown = cooldown
        self._until: dict[str, float] = {}
        self._probing: set[str] = set()
        self._lock = threading.Lock()

    def begin(self, key: str) -> str | None:
        """May this peer be asked now? "ask", "probe" (it is slow: this is the one request in
        flight), or None (skip it: it is slow and already being probed)."""
        with self._lock:
            if time.monotonic() >= self._until.get(key, 0.0):
                return "ask"
            if key in self._probing:
                return None
            self._probing.add(key)
            return "probe"

    def is_slow(self, key: str) -> bool:
        """Still inside its cool-down (other callers, e.g. the clock check, skip it)."""
        with self._lock:
            return time.monotonic() < self._until.get(key, 0.0)

    def end(self, key: str, how: str, slow: bool) -> None:
        with self._lock:
            if how == "probe":
                self._probing.discard(key)
            if slow:
                self._until[key] = time.monotonic() + self.cooldown
            else:
                self._until.pop(key, None)


def newest_from_peers(
    svc: Any, policy: Policy, slow: SlowPeers | None = None
) -> dict[str, Any] | None:
    """The newest valid heartbeat the case's peers hold (None: none newer, or none answered).

    Every peer is asked in parallel and each answer is bounded by `peer_timeout`, the whole
    sync by CASE_SYNC_TIMEOUTS of them, whatever the peers do."""
    peers = [c for c in policy.nodes if c.sign_pk != svc.identity.card.sign_pk]
    if not peers:
        return None
    slow = slow or SlowPeers()
    timeout = svc.config.peer_timeout
    case_end = time.monotonic() + timeout * CASE_SYNC_TIMEOUTS

    def ask(card: Card) -> dict[str, Any] | None:
        left = case_end - time.monotonic()
        if left <= 0:
            log.warning("pre-release sync: no time left to ask peer %s; skipped", card.name)
            return None
        try:
            with peer_client(svc, card) as client:
                key = client.base
                how = slow.begin(key)
                if how is None:
                    log.warning(
                        "pre-release sync: peer %s was too slow recently; skipped", card.name
                    )
                    return None
                failed_slow = False
                try:
                    with transport.deadline(min(timeout, left)):
                        return client.latest_heartbeat(policy.case_id)
                except VeladorError as exc:
                    failed_slow = ran_out(exc)
                    raise
                finally:
                    slow.end(key, how, failed_slow)
        except VeladorError as exc:
            log.warning("pre-release sync: peer %s: %s", card.name, exc)
            return None
        except Exception:
            # Whatever a hostile peer or its card makes the client do, it is a peer that did
            # not answer: a release must never fail because of one (issue 11, finding 1).
            log.exception("pre-release sync: peer %s: unexpected error; ignored", card.name)
            return None

    best: dict[str, Any] | None = None
    best_seq = -1
    with ThreadPoolExecutor(max_workers=min(MAX_ASKS_PER_CASE, len(peers))) as pool:
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
