"""The clock check before a release caused by time (docs/protocol.md §7.1; issue 11, finding 6).

A node whose clock jumps ahead (a bad NTP source, a hand-set date, a restored VM snapshot, an
attacker who controls its time) would release every case early. Before a deadline or editor
release, the node asks each peer of the case for its time, signed over a fresh nonce
(GET /v1/clock, §4.8), and refuses to release while its own clock is more than TOLERANCE ahead
of a strict majority of the peers that answered, unless the release is due by the peers' time
too (this node's clock minus its median lead over them): a wrong clock then delays nothing.
Peers that do not answer do not count: if none answers the release goes ahead, because a
release must not be preventable by taking peers down.

The refusal is an alarm, not a silent wait: logged at ERROR (by the sweep), counted in
`velador_node_clock_alarms_total`, shown in the `velador_node_clock_alarm` gauge, written to the
audit log (`clock_alarm`) and sent to the operator's [notify] addresses, once per case until the
check passes again.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from vault.cards import Card
from vault.errors import VeladorError
from vault.policy import Policy

from . import audit, gossip, notices
from .engine import CaseState

log = logging.getLogger("velador.node.clock")

TOLERANCE = 600
"""Seconds this node's clock may be ahead of a peer's before the peer counts against it."""


@dataclass(frozen=True)
class ClockVerdict:
    asked: int
    """Peers of the case asked."""
    answered: int
    """Peers that sent a valid signed time in time."""
    behind: int
    """Peers whose signed time is more than TOLERANCE behind this node's clock."""
    lead: int
    """The median of this node's lead over the peers that answered, in seconds (0: none)."""

    @property
    def ok(self) -> bool:
        """False when the local clock is ahead of a strict majority of the peers that answered.
        No answer at all is not a reason to refuse (see the module docstring)."""
        return self.answered == 0 or 2 * self.behind <= self.answered

    def text(self) -> str:
        return (
            f"this node's clock is about {self.lead} s ahead of {self.behind} of the "
            f"{self.answered} peer(s) that answered ({self.asked} asked)"
        )


def judge(
    local: int, peer_times: list[int], asked: int, tolerance: int = TOLERANCE
) -> ClockVerdict:
    """The verdict for a local time read just before asking and the peers' signed times.

    A peer's time was read after the request left, so `local - peer` only underestimates how far
    ahead this node is: slow answers never make a correct clock look wrong."""
    leads = sorted(local - t for t in peer_times)
    behind = sum(1 for d in leads if d > tolerance)
    median = leads[len(leads) // 2] if leads else 0
    return ClockVerdict(asked, len(leads), behind, max(0, median))


def holds(verdict: ClockVerdict, due: int | None, now: int) -> bool:
    """Whether a release due at `due` is held: the clock is ahead of most peers (not ok) and,
    by the peers' time (`now - lead`), the release is not due yet."""
    if verdict.ok:
        return False
    return due is None or due > now - verdict.lead


MONOTONIC = time.monotonic
"""This node's own elapsed-time source (tests replace it); never its wall clock, the suspect."""


def hold_expired(svc: Any, case_id: str, last_beat: int, longest: int) -> bool:
    """Whether this case's release has been held long enough that it goes ahead anyway.

    Peers' times are their word: a peer that lies (a co-node of the case, compromised) could
    otherwise hold a release for ever, since peers that answer decide the verdict (review of
    issue 11). Real time passes at the same rate whatever the clocks say, and the release was
    due at most `longest` (every + grace) after the reporter's last check-in, which happened
    before the hold began: so once this node has held the release for `longest` seconds of its
    own elapsed time, the release is due in real time too, and goes ahead (with the alarm).
    A wrong clock then releases nothing early, and a lying peer delays a release by at most one
    interval plus grace. A new check-in (`last_beat`) starts a new hold; a restart forgets
    holds, so it can restart one (logged)."""
    holds: dict[str, tuple[int, float]] = svc.clock_holds
    now = MONOTONIC()
    beat, started = holds.get(case_id, (None, None))
    if beat != last_beat or started is None:
        holds[case_id] = (last_beat, now)
        return False
    return now - started >= longest


def forget_hold(svc: Any, case_id: str) -> None:
    svc.clock_holds.pop(case_id, None)


def _ask(svc: Any, card: Card) -> int | None:
    nonce = secrets.token_bytes(32)
    try:
        with gossip.peer_client(svc, card) as client:
            return int(client.signed_time(nonce)["time"])
    except VeladorError as exc:
        log.warning("clock check: peer %s: %s", card.name, exc)
        return None
    except Exception:  # a hostile peer is a silent one, never a failed release
        log.exception("clock check: peer %s: unexpected error; ignored", card.name)
        return None


def peer_times(
    svc: Any, policy: Policy, slow: gossip.SlowPeers | None = None
) -> tuple[int, list[int], int]:
    """(local time before asking, the signed times that came back, peers asked).

    Bounded in wall-clock time: peers still silent after `peer_timeout` (+1 s) are left behind
    (their threads end with their own timeouts), so a dripping peer cannot hold the sweep.
    Peers the pre-release sync found too slow just now (`slow`) are not asked again: one
    hostile peer then costs one timeout per cool-down, not one per case."""
    peers = [c for c in policy.nodes if c.sign_pk != svc.identity.card.sign_pk]
    if slow is not None:
        peers = [c for c in peers if not slow.is_slow(gossip.peer_key(svc, c))]
    local = svc.clock.now()
    if not peers:
        return local, [], 0
    pool = ThreadPoolExecutor(max_workers=min(8, len(peers)), thread_name_prefix="clock-check")
    try:
        futures = [pool.submit(_ask, svc, card) for card in peers]
        done, _ = wait(futures, timeout=svc.config.peer_timeout + 1)
        times = [t for f in futures if f in done and (t := f.result()) is not None]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return local, times, len(peers)


def check(svc: Any, policy: Policy, slow: gossip.SlowPeers | None = None) -> ClockVerdict:
    local, times, asked = peer_times(svc, policy, slow)
    return judge(local, times, asked)


def raise_alarm(
    svc: Any,
    conn: sqlite3.Connection,
    policy: Policy,
    cs: CaseState,
    verdict: ClockVerdict,
    now: int,
    held: bool = True,
) -> None:
    """Record the alarm (inside the caller's transaction). `held`: the release is refused, and
    the caller raises ClockAlarm so the sweep retries at its next tick; otherwise the release is
    due by the peers' time too and goes ahead, but the clock is still wrong."""
    case_id = policy.case_id
    if held:
        log.error(
            "CLOCK ALARM: case %s: %s; release refused, retried every sweep; check NTP",
            case_id,
            verdict.text(),
        )
    else:
        log.error(
            "CLOCK ALARM: case %s: %s; the release is due by the peers' time too, so it goes "
            "ahead; check NTP",
            case_id,
            verdict.text(),
        )
    svc.metrics.inc("velador_node_clock_alarms_total")
    first = case_id not in svc.clock_alarms
    # A hold that ends with the release going ahead is told again: the first notice said the
    # release was held, and the operator must not believe that any longer.
    was_held = case_id in svc.clock_alarms_held
    svc.clock_alarms[case_id] = now
    if held:
        svc.clock_alarms_held.add(case_id)
    else:
        svc.clock_alarms_held.discard(case_id)
    svc.metrics.set("velador_node_clock_alarm", len(svc.clock_alarms))
    if first or (was_held and not held):
        # The text says what happens: held, or gone ahead (the peers' time agreed, or the hold
        # bound every + grace passed, docs/protocol.md §7.1 step 5).
        notices.emit_operator(
            conn,
            svc.identity,
            svc.config,
            policy,
            cs,
            svc.rules_of(policy),
            "clock_alarm",
            now,
            variant=None if held else "clock_alarm:ahead",
        )
        audit.append(
            conn,
            now,
            case_id,
            "clock_alarm",
            {
                "asked": verdict.asked,
                "answered": verdict.answered,
                "behind": verdict.behind,
                "lead": verdict.lead,
                "held": held,
            },
        )


def clear_alarm(svc: Any, case_id: str) -> None:
    svc.clock_alarms_held.discard(case_id)
    if svc.clock_alarms.pop(case_id, None) is not None:
        log.info("clock check: case %s: its release is no longer held", case_id)
        svc.metrics.set("velador_node_clock_alarm", len(svc.clock_alarms))
