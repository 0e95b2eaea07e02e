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
    EDITOR_PENDING  editor quorum reached; release at the end of the objection window. The state
                    the case was in (`prior`) keeps running underneath: its reminders, overdue
                    warning, pause end and deadline release happen as they would have (§5.2)
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

    @property
    def request_lifetime(self) -> int:
        """How long an editor's release request counts towards the quorum (docs/protocol.md
        §4.5): one check-in interval plus its grace, the time in which silence alone would
        release. Older requests lapse; a quorum needs requests made within one such period."""
        return self.every + self.grace

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
    editor_times: tuple[int, ...] = ()
    """When each request in `editors` was counted (same order); requests lapse
    `Rules.request_lifetime` after it."""
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
        if cs.prior == PAUSED:
            # After the pause ends underneath, the deadline runs again (pause_ended below).
            assert cs.paused_until is not None
            return min(cs.pending_until, cs.paused_until + rules.every + rules.grace)
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
        prior=None,
    )
    return new, [Effect("release", reason), *notify("released", *audiences)]


def register(rules: Rules, now: int) -> Result:
    """A new case starts ARMED with a full interval before its first deadline."""
    cs = CaseState(state=ARMED, seq=0, last_beat=now, deadline=now + rules.every)
    return advance(cs, rules, now)


def advance(cs: CaseState, rules: Rules, now: int, synced: bool = False) -> Result:
    """Apply every transition that time alone causes, up to `now`. Idempotent."""
    effects: list[Effect] = []
    for _ in range(12):  # each pass moves at least one step; 12 bounds any chain
        new, step = _step(cs, rules, now, synced)
        if new == cs and not step:
            return cs, effects
        cs = new
        effects += step
        if any(e.kind == "sync_peers" for e in step):
            return cs, effects
    return cs, effects


def _lapse_requests(cs: CaseState, rules: Rules, now: int) -> CaseState:
    """Drop editor requests older than their lifetime (not once a quorum was reached)."""
    if not cs.editors or cs.state == EDITOR_PENDING or cs.state in TERMINAL:
        return cs
    live = rules.request_lifetime
    keep = [(fp, t) for fp, t in zip(cs.editors, _times(cs), strict=True) if now < t + live]
    if len(keep) == len(cs.editors):
        return cs
    return replace(cs, editors=tuple(k[0] for k in keep), editor_times=tuple(k[1] for k in keep))


def _times(cs: CaseState) -> tuple[int, ...]:
    # A state written before request times were kept has none: its requests count as lapsed.
    if len(cs.editor_times) == len(cs.editors):
        return cs.editor_times
    return (0,) * len(cs.editors)


def _step(cs: CaseState, rules: Rules, now: int, synced: bool) -> Result:
    lapsed = _lapse_requests(cs, rules, now)
    if lapsed != cs:
        return lapsed, []
    return _time_step(cs, rules, now, synced)


def _time_step(cs: CaseState, rules: Rules, now: int, synced: bool) -> Result:
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
        assert cs.pending_until is not None
        if now >= cs.pending_until:
            # Every release caused by time goes through the same pre-release sync and clock
            # check as a deadline release (docs/protocol.md §4.3): issue 11, finding 5.
            if not synced:
                return cs, [Effect("sync_peers")]
            return _released(cs, now, "editors", ("recipients", "editors", "reporter"))
        if cs.prior in WATCHING or cs.prior == PAUSED:
            # The prior state runs underneath: reminders, the overdue warning, the end of a
            # pause and a deadline release happen exactly as they would without the request.
            inner, step = _time_step(replace(cs, state=cs.prior), rules, now, synced)
            if inner.state == RELEASED:
                return inner, step
            return replace(inner, state=EDITOR_PENDING, prior=inner.state), step
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
    wake = _next_wake(cs, rules)
    if cs.editors and cs.state != EDITOR_PENDING and cs.state not in TERMINAL:
        lapse = min(_times(cs)) + rules.request_lifetime
        wake = lapse if wake is None else min(wake, lapse)
    return wake


def _next_wake(cs: CaseState, rules: Rules) -> int | None:
    st = cs.state
    if st == PAUSED:
        return cs.paused_until
    if st in (ARMED, REMINDED):
        times = [cs.deadline]
        times += [cs.deadline - r for i, r in enumerate(rules.remind) if i >= cs.reminded]
        return min(times)
    if st == OVERDUE:
        return release_time(cs, rules)
    if st == EDITOR_PENDING:
        assert cs.pending_until is not None
        if cs.prior in WATCHING or cs.prior == PAUSED:
            inner = _next_wake(replace(cs, state=cs.prior), rules)
            if inner is not None:
                return min(cs.pending_until, inner)
        return cs.pending_until
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
    # Never earlier than the deadline in force: after a pause ended (deadline = end + every) or
    # a resume, a heartbeat signed before that moment (late gossip) must not shorten it.
    deadline = max(cs.deadline, last + rules.every)
    effects: list[Effect] = []
    new = replace(cs, seq=seq, last_beat=last)
    if cs.state == OVERDUE and deadline <= now:
        # Signed too long ago to move the deadline past now (late gossip, a reporter's clock
        # behind): the case stays overdue with the later deadline, if any. Going back to ARMED
        # would tell the editors "checked in" and then "overdue" again for the same deadline:
        # two false alarms (found by the chaos harness, invariant e).
        new = replace(new, deadline=deadline)
    elif cs.state in WATCHING:
        if cs.state == OVERDUE:
            effects += notify("checked_in", "editors")
        new = replace(new, state=ARMED, deadline=deadline, reminded=0, warned=False)
    elif cs.state == EDITOR_PENDING and cs.prior in WATCHING:
        # A heartbeat does not cancel an editor release (a captor can force a check-in); only
        # a signed objection does. It does move the deadline that runs underneath (and, as
        # above, one that stays in the past leaves the case overdue underneath, silently).
        if cs.prior == OVERDUE and deadline <= now:
            new = replace(new, deadline=deadline)
        else:
            if cs.prior == OVERDUE:
                effects += notify("checked_in", "editors")
            new = replace(new, deadline=deadline, reminded=0, warned=False, prior=ARMED)
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
    """One editor's release request (docs/protocol.md §4.5).

    Requests count per distinct editor and lapse after `rules.request_lifetime`; an objection
    clears them, so a quorum after an objection is made of new requests only. A quorum reached
    while the case is PAUSED is held: the reporter paused on purpose and is presumed alive, so
    the objection window ends `objection_window` after the pause ends, never during it."""
    if rules.editor_quorum <= 0:
        raise Forbidden("this case's policy does not allow editor releases")
    _refuse_terminal(cs, "request a release")
    if cs.state == EDITOR_PENDING:
        return cs, []  # idempotent
    cs = _lapse_requests(cs, rules, now)
    if editor_fp in cs.editors:
        return cs, []  # idempotent (a lapsed request is counted again, from now)
    editors = (*cs.editors, editor_fp)
    times = (*_times(cs), now)
    if len(editors) < rules.editor_quorum:
        return replace(cs, editors=editors, editor_times=times), notify("editor_request", "editors")
    opens = now
    if cs.state == PAUSED:
        assert cs.paused_until is not None
        opens = max(now, cs.paused_until)
    new = replace(
        cs,
        state=EDITOR_PENDING,
        prior=cs.state,
        editors=editors,
        editor_times=times,
        pending_until=opens + rules.objection_window,
    )
    effects = notify("editor_pending", "reporter", "editors")
    new, more = advance(new, rules, now)
    return new, effects + more


def objection(cs: CaseState, rules: Rules, now: int) -> Result:
    """The reporter's objection: cancels a pending editor release, and also clears requests
    that have not reached the quorum yet (at a node where they had not, when the reporter
    objected at another): after an objection, a release needs a fresh quorum."""
    _refuse_terminal(cs, "object")
    if cs.state != EDITOR_PENDING:
        live = _lapse_requests(cs, rules, now)
        if not live.editors:
            raise Conflict(f"nothing to object to: the case is {cs.state}")
        new = replace(live, editors=(), editor_times=())
        return new, notify("objection", "editors")
    assert cs.pending_until is not None and cs.prior is not None
    if now >= cs.pending_until:
        raise Conflict("the objection window has closed")
    # `prior` is current: it kept running underneath (reminders, overdue, pause end).
    new = replace(cs, state=cs.prior, prior=None, editors=(), editor_times=(), pending_until=None)
    new, more = advance(new, rules, now)
    return new, notify("objection", "editors") + more
