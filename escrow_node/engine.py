"""The deadline state machine (docs/protocol.md §5), as pure functions.

Every function takes the current `CaseState`, the case's `Rules` and the time `now`, and returns
the new state plus a list of `Effect`s (notifications, release, deletion, peer sync). Nothing here
does I/O or reads a clock: the caller persists the new state, the audit entry and the outbox rows
in one transaction, and only then acts. That is what makes the engine restart-safe: re-running
`advance` on a persisted state is a no-op unless time has moved.

States:
    ARMED           waiting for the next heartbeat; no reminder sent for this deadline yet
    REMINDED        at least one reminder for this deadline was sent
    OVERDUE         deadline passed; reporter warned and editors alerted; release at deadline+grace
    EDITOR_PENDING  editor quorum reached; release at the end of the objection window
    PAUSED          no deadline until `paused_until` (or a resume)
    DESTROYING      destroy requested with a delay; editors told; envelopes deleted at destroy_at
    RELEASED        terminal: envelopes are served to the recipients
    DESTROYED       terminal: envelopes deleted

Duress is deliberately not a state: a state would show in receipts and status answers, which a
captor can read. It is recorded only in `duress_at` and the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.policy import Switch

from .errors import Conflict, Forbidden, StaleHeartbeat

ARMED = "ARMED"
REMINDED = "REMINDED"
OVERDUE = "OVERDUE"
EDITOR_PENDING = "EDITOR_PENDING"
PAUSED = "PAUSED"
DESTROYING = "DESTROYING"
RELEASED = "RELEASED"
DESTROYED = "DESTROYED"

STATES = (ARMED, REMINDED, OVERDUE, EDITOR_PENDING, PAUSED, DESTROYING, RELEASED, DESTROYED)
WATCHING = (ARMED, REMINDED, OVERDUE)
"""States in which the dead-man deadline runs."""
TERMINAL = (RELEASED, DESTROYED)

MAX_PAUSE = 366 * 86400
FUTURE_SKEW = 300
"""A heartbeat may be stamped at most this far in the future (clock skew)."""


@dataclass(frozen=True)
class Rules:
    """The parts of the policy's switch the engine needs."""

    every: int
    grace: int
    remind: tuple[int, ...] = ()  # offsets before the deadline, largest first
    editor_quorum: int = 0
    objection_window: int = 0
    duress: str = "alert"
    destroy_delay: int = 0

    def __post_init__(self) -> None:
        # A reminder at or before the start of the interval would fire right after every
        # heartbeat; such offsets are ignored. Largest offset first.
        remind = tuple(sorted({r for r in self.remind if 0 < r < self.every}, reverse=True))
        object.__setattr__(self, "remind", remind)

    @classmethod
    def from_switch(cls, sw: Switch) -> Rules:
        return cls(
            sw.every,
            sw.grace,
            tuple(sw.remind),
            sw.editor_quorum,
            sw.objection_window,
            sw.duress,
            sw.destroy_delay,
        )


@dataclass(frozen=True)
class CaseState:
    state: str
    seq: int = 0
    last_beat: int = 0
    deadline: int = 0
    reminded: int = 0
    warned: bool = False
    paused_until: int | None = None
    pending_until: int | None = None
    destroy_at: int | None = None
    prior: str | None = None
    editors: tuple[str, ...] = ()
    released_at: int | None = None
    release_reason: str | None = None
    duress_at: int | None = None


@dataclass(frozen=True)
class Effect:
    """Something the caller must do after persisting the new state.

    kind: "notify" (event, audience), "release" (event = reason), "delete_envelopes",
    "sync_peers" (ask peers for a newer heartbeat, then call advance(..., synced=True)).
    audience: "reporter" | "editors" | "recipients" | "" (not a notification).
    """

    kind: str
    event: str = ""
    audience: str = ""


def replace(cs: CaseState, **changes: Any) -> CaseState:
    """dataclasses.replace for a CaseState without its per-call field introspection (four of
    these per heartbeat cost more than the receipt signature). Same checks: an unknown field is
    a TypeError from the constructor."""
    fields = dict(cs.__dict__)
    fields.update(changes)
    return CaseState(**fields)


def notify(event: str, *audiences: str) -> list[Effect]:
    return [Effect("notify", event, a) for a in audiences]


Result = tuple[CaseState, list[Effect]]


def release_time(cs: CaseState, rules: Rules) -> int | None:
    """The time at which the case releases if nothing else happens."""
    if cs.state in WATCHING:
        return cs.deadline + rules.grace
    if cs.state == EDITOR_PENDING:
        assert cs.pending_until is not None
        if cs.prior in WATCHING:
            return min(cs.pending_until, cs.deadline + rules.grace)
        return cs.pending_until
    return None


def _released(cs: CaseState, now: int, reason: str, audiences: tuple[str, ...]) -> Result:
    new = replace(
        cs,
        state=RELEASED,
        released_at=now,
        release_reason=reason,
        pending_until=None,
        destroy_at=None,
        paused_until=None,
    )
    return new, [Effect("release", reason), *notify("released", *audiences)]


def register(rules: Rules, now: int) -> Result:
    """A new case starts ARMED with a full interval before its first deadline."""
    cs = CaseState(state=ARMED, seq=0, last_beat=now, deadline=now + rules.every)
    return advance(cs, rules, now)


def advance(cs: CaseState, rules: Rules, now: int, synced: bool = False) -> Result:
    """Apply every transition that time alone causes, up to `now`. Idempotent."""
    effects: list[Effect] = []
    for _ in range(8):  # each pass moves at least one step; 8 bounds any chain
        cs, step = _step(cs, rules, now, synced)
        if not step:
            return cs, effects
        effects += step
        if any(e.kind == "sync_peers" for e in step):
            return cs, effects
    return cs, effects


def _step(cs: CaseState, rules: Rules, now: int, synced: bool) -> Result:
    st = cs.state
    if st == PAUSED:
        assert cs.paused_until is not None
        if now >= cs.paused_until:
            new = replace(
                cs,
                state=ARMED,
                paused_until=None,
                deadline=cs.paused_until + rules.every,
                reminded=0,
                warned=False,
            )
            return new, notify("pause_ended", "reporter", "editors")
        return cs, []
    if st in (ARMED, REMINDED):
        if now >= cs.deadline:
            new = replace(cs, state=OVERDUE, warned=True)
            return new, notify("overdue", "reporter", "editors")
        due = sum(1 for r in rules.remind if now >= cs.deadline - r)
        if due > cs.reminded:
            # Several offsets falling due at once (a node that was down) give one reminder.
            return replace(cs, state=REMINDED, reminded=due), notify("reminder", "reporter")
        return cs, []
    if st == OVERDUE:
        if now >= cs.deadline + rules.grace:
            if not synced:
                return cs, [Effect("sync_peers")]
            return _released(cs, now, "deadline", ("recipients", "editors", "reporter"))
        return cs, []
    if st == EDITOR_PENDING:
        due = release_time(cs, rules)
        if due is not None and now >= due:
            return _released(cs, now, "editors", ("recipients", "editors", "reporter"))
        return cs, []
    if st == DESTROYING:
        assert cs.destroy_at is not None
        if now >= cs.destroy_at:
            new = replace(cs, state=DESTROYED, destroy_at=None)
            return new, [Effect("delete_envelopes"), *notify("destroyed", "reporter", "editors")]
        return cs, []
    return cs, []


def next_wake(cs: CaseState, rules: Rules) -> int | None:
    """The next time at which `advance` may change something (None: never by itself)."""
    st = cs.state
    if st == PAUSED:
        return cs.paused_until
    if st in (ARMED, REMINDED):
        times = [cs.deadline]
        times += [cs.deadline - r for i, r in enumerate(rules.remind) if i >= cs.reminded]
        return min(times)
    if st in (OVERDUE, EDITOR_PENDING):
        return release_time(cs, rules)
    if st == DESTROYING:
        return cs.destroy_at
    return None


def _refuse_terminal(cs: CaseState, action: str) -> None:
    if cs.state in TERMINAL:
        raise Conflict(f"cannot {action}: the case is {cs.state}")


def heartbeat(
    cs: CaseState, rules: Rules, seq: int, beat_time: int, now: int, duress: bool = False
) -> Result:
    """A valid reporter-signed heartbeat (direct or forwarded by a peer)."""
    _refuse_terminal(cs, "check in")
    if cs.state == DESTROYING:
        raise Conflict("cannot check in: the case is being destroyed")
    if seq <= cs.seq:
        raise StaleHeartbeat(f"heartbeat sequence {seq} is not newer than {cs.seq}")
    if beat_time > now + FUTURE_SKEW:
        raise Conflict("heartbeat is stamped in the future; check the reporter's clock")
    # Nodes compute the deadline from the reporter's signed time, not from when the heartbeat
    # arrived, so every node of the case agrees on it even when gossip is late.
    last = max(cs.last_beat, beat_time)
    effects: list[Effect] = []
    new = replace(cs, seq=seq, last_beat=last)
    if cs.state in WATCHING:
        if cs.state == OVERDUE:
            effects += notify("checked_in", "editors")
        new = replace(new, state=ARMED, deadline=last + rules.every, reminded=0, warned=False)
    elif cs.state == EDITOR_PENDING and cs.prior in WATCHING:
        # A heartbeat does not cancel an editor release (a captor can force a check-in); only
        # a signed objection does. It does move the deadline that applies after an objection.
        new = replace(new, deadline=last + rules.every, reminded=0, warned=False, prior=ARMED)
    # PAUSED: the sequence is recorded; the pause keeps running.
    if duress:
        new = replace(new, duress_at=now)
        if rules.duress == "release":
            new, rel = _released(new, now, "duress", ("recipients", "editors"))
            return new, effects + rel
        effects += notify("duress", "editors")
    new, more = advance(new, rules, now)
    return new, effects + more


def duress_signal(cs: CaseState, rules: Rules, now: int) -> Result:
    """A reporter action (pause, destroy, objection, rotation...) that carried the duress marker.

    The action is NOT done: the case keeps running as it was, the editors get the same silent
    alarm a duress check-in raises, and a "release" policy releases. The captor is answered from
    the cover state instead (escrow_node/cover.py), so a pause forced under duress can never
    hold a case quietly for a year (docs/protocol.md §4.4)."""
    if cs.state in TERMINAL:
        return cs, []
    new = replace(cs, duress_at=now)
    if rules.duress == "release":
        return _released(new, now, "duress", ("recipients", "editors"))
    new, more = advance(new, rules, now)
    return new, notify("duress", "editors") + more


def pause(cs: CaseState, rules: Rules, until: int, now: int) -> Result:
    _refuse_terminal(cs, "pause")
    if cs.state not in (*WATCHING, PAUSED):
        raise Conflict(f"cannot pause: the case is {cs.state}")
    if not now < until <= now + MAX_PAUSE:
        raise Conflict("a pause must end in the future and within 366 days")
    new = replace(cs, state=PAUSED, paused_until=until)
    return new, notify("paused", "editors")


def resume(cs: CaseState, rules: Rules, now: int) -> Result:
    if cs.state != PAUSED:
        raise Conflict(f"cannot resume: the case is {cs.state}, not PAUSED")
    new = replace(
        cs, state=ARMED, paused_until=None, deadline=now + rules.every, reminded=0, warned=False
    )
    new, more = advance(new, rules, now)
    return new, notify("resumed", "editors") + more


def release_now(cs: CaseState, rules: Rules, now: int) -> Result:
    _refuse_terminal(cs, "release")
    return _released(cs, now, "reporter", ("recipients", "editors", "reporter"))


def destroy(cs: CaseState, rules: Rules, now: int) -> Result:
    _refuse_terminal(cs, "destroy")
    if cs.state == DESTROYING:
        return cs, []  # idempotent: the first request set the time
    if cs.state == EDITOR_PENDING:
        raise Conflict("cannot destroy while an editor release is pending; object first")
    if rules.destroy_delay > 0:
        new = replace(cs, state=DESTROYING, destroy_at=now + rules.destroy_delay, paused_until=None)
        return new, notify("destroy_pending", "editors", "reporter")
    new = replace(cs, state=DESTROYED, paused_until=None)
    return new, [Effect("delete_envelopes"), *notify("destroyed", "reporter", "editors")]


def editor_request(cs: CaseState, rules: Rules, editor_fp: str, now: int) -> Result:
    if rules.editor_quorum <= 0:
        raise Forbidden("this case's policy does not allow editor releases")
    _refuse_terminal(cs, "request a release")
    if cs.state == EDITOR_PENDING or editor_fp in cs.editors:
        return cs, []  # idempotent
    editors = (*cs.editors, editor_fp)
    if len(editors) < rules.editor_quorum:
        return replace(cs, editors=editors), notify("editor_request", "editors")
    new = replace(
        cs,
        state=EDITOR_PENDING,
        prior=cs.state,
        editors=editors,
        pending_until=now + rules.objection_window,
    )
    effects = notify("editor_pending", "reporter", "editors")
    new, more = advance(new, rules, now)
    return new, effects + more


def objection(cs: CaseState, rules: Rules, now: int) -> Result:
    if cs.state != EDITOR_PENDING:
        raise Conflict(f"nothing to object to: the case is {cs.state}")
    assert cs.pending_until is not None and cs.prior is not None
    if now >= cs.pending_until:
        raise Conflict("the objection window has closed")
    prior = ARMED if cs.prior in WATCHING else cs.prior
    new = replace(cs, state=prior, prior=None, editors=(), pending_until=None)
    if prior == ARMED:
        new = replace(new, warned=False)
    new, more = advance(new, rules, now)
    return new, notify("objection", "editors") + more
