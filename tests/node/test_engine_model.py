"""Model-based test of the deadline engine (docs/protocol.md §4.5, §5; issue 11).

A hypothesis RuleBasedStateMachine drives the real engine (escrow_node/engine.py) with an
injected clock, through random heartbeats (some signed a little in the past, some under
duress), time jumps (the scheduler's exact wake-ups, or one jump as after a node was down),
editor requests, objections, pauses, resumes, reporter releases and restarts (the state written
to a real `cases` row with the node's own schema and write path, and read back). Beside it runs
a small reference model that knows only what the reporter and the editors did and when. After
every step:

- a deadline release happened only if the model says the reporter has been silent for
  every + grace outside any pause; an editor release only if the model's objection window ended;
- the engine is released whenever the model says one of those is due (no release is missed);
- a restart changes nothing.
"""

from __future__ import annotations

import sqlite3

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from escrow_node import engine as E
from escrow_node.db import MIGRATIONS
from escrow_node.errors import Conflict
from escrow_node.service import _LOAD_STATE, _UPDATE_STATE, _state_values, state_of
from tests.fuzz.profiles import fuzz_settings
from vault.clock import FakeClock

T = 1_000_000
EDITORS = ("ed0", "ed1", "ed2")


class Model:
    """What a careful person would expect, from the parties' acts alone."""

    def __init__(self, rules: E.Rules, now: int) -> None:
        self.r = rules
        self.last_beat = now  # newest signed heartbeat time (registration counts as one)
        self.basis = now  # the silence runs from here, outside pauses
        self.paused_until: int | None = None
        self.votes: dict[str, int] = {}
        self.pending_until: int | None = None
        self.released: str | None = None

    def settle(self, now: int) -> None:
        if self.paused_until is not None and now >= self.paused_until:
            self.basis, self.paused_until = self.paused_until, None
        self.votes = {
            fp: t for fp, t in self.votes.items() if now < t + self.r.every + self.r.grace
        }

    def deadline_due(self, now: int) -> bool:
        return self.paused_until is None and now >= self.basis + self.r.every + self.r.grace

    def editors_due(self, now: int) -> bool:
        return self.pending_until is not None and now >= self.pending_until


class EngineMachine(RuleBasedStateMachine):
    @initialize(
        every=st.integers(10, 500),
        grace=st.integers(0, 200),
        remind=st.lists(st.integers(1, 400), max_size=2, unique=True),
        quorum=st.integers(1, 3),
        window=st.integers(0, 300),
    )
    def start(self, every, grace, remind, quorum, window):
        self.rules = E.Rules(
            every=every,
            grace=grace,
            remind=tuple(remind),
            editor_quorum=quorum,
            objection_window=window,
        )
        self.clock = FakeClock(T)
        self.cs, _ = E.register(self.rules, T)
        self.model = Model(self.rules, T)
        self.seq = 0
        self.db = sqlite3.connect(":memory:")
        self.db.row_factory = sqlite3.Row
        self.db.executescript(MIGRATIONS[1])
        cols = "case_id, policy_hash, policy, reporter, state, seq, last_beat, deadline, reminded,"
        self.db.execute(
            f"INSERT INTO cases ({cols} warned, editors, registered, updated, version)"
            " VALUES ('c', 'h', '{}', 'r', 'ARMED', 0, 0, 0, 0, 0, '[]', 0, 0, 1)"
        )

    def teardown(self):
        if hasattr(self, "db"):
            self.db.close()

    # --- driving the engine as the node does -------------------------------------------------

    def advance(self, now: int) -> None:
        """One sweep at `now`: advance, and after the pre-release sync (in process there is no
        peer with a newer heartbeat: every heartbeat reached this node) advance again."""
        cs, eff = E.advance(self.cs, self.rules, now)
        if any(e.kind == "sync_peers" for e in eff):
            cs, _ = E.advance(cs, self.rules, now, synced=True)
        self.check_release(cs, now)
        self.cs = cs

    def act(self, fn, *args, then=lambda: None):
        """Run a party's act at the current time; the model follows (`then`) only if the engine
        took it, before the release check."""
        try:
            cs, eff = fn(self.cs, self.rules, *args)
        except Conflict:
            return False
        self.model.settle(self.clock.now())
        then()
        if any(e.kind == "sync_peers" for e in eff):
            cs, _ = E.advance(cs, self.rules, self.clock.now(), synced=True)
        self.check_release(cs, self.clock.now())
        self.cs = cs
        return True

    def check_release(self, cs: E.CaseState, now: int) -> None:
        m = self.model
        m.settle(now)
        if cs.state == E.RELEASED and self.cs.state != E.RELEASED:
            reason = cs.release_reason
            if reason == "deadline":
                assert m.deadline_due(now), "released while the model says the reporter is alive"
            elif reason == "editors":
                assert m.editors_due(now), "editor release before the objection window ended"
            else:
                assert reason == "reporter" and m.released == "reporter"
            m.released = m.released or reason

    # --- rules ---------------------------------------------------------------------------------

    @rule(dt=st.one_of(st.integers(1, 20), st.integers(1, 400)), stepwise=st.booleans())
    def time_passes(self, dt, stepwise):
        target = self.clock.now() + dt
        if stepwise:  # the exact-time job fires at every wake-up on the way
            while (w := E.next_wake(self.cs, self.rules)) is not None and w <= target:
                self.clock.set(max(w, self.clock.now()))
                self.advance(self.clock.now())
        self.clock.set(target)
        self.advance(target)

    @rule(back=st.one_of(st.just(0), st.integers(0, 60)), duress=st.booleans())
    def heartbeat(self, back, duress):
        """A check-in; under duress (`duress = alert`) it must act exactly as a normal one."""
        now = self.clock.now()
        self.seq += 1
        m = self.model

        def then():
            m.last_beat = max(m.last_beat, now - back)
            if m.paused_until is None:
                m.basis = max(m.basis, m.last_beat)  # a deadline is never shortened

        self.act(E.heartbeat, self.seq, now - back, now, duress, then=then)

    @rule(length=st.one_of(st.integers(1, 40), st.integers(1, 600)))
    def pause(self, length):
        now = self.clock.now()
        self.act(
            E.pause,
            now + length,
            now,
            then=lambda: setattr(self.model, "paused_until", now + length),
        )

    @rule()
    def resume(self):
        now = self.clock.now()

        def then():
            self.model.basis, self.model.paused_until = now, None

        self.act(E.resume, now, then=then)

    @rule(who=st.sampled_from(EDITORS))
    def editor_request(self, who):
        now = self.clock.now()
        m = self.model

        def then():
            if m.pending_until is not None:
                return
            m.votes.setdefault(who, now)
            if len(m.votes) >= self.rules.editor_quorum:
                opens = now if m.paused_until is None else max(now, m.paused_until)
                m.pending_until = opens + self.rules.objection_window

        self.act(E.editor_request, who, now, then=then)

    @rule()
    def objection(self):
        def then():
            self.model.votes, self.model.pending_until = {}, None

        self.act(E.objection, self.clock.now(), then=then)

    @precondition(lambda self: self.seq % 7 == 3)  # rare: it ends the run
    @rule()
    def release_now(self):
        def then():
            self.model.released = self.model.released or "reporter"

        self.act(E.release_now, self.clock.now(), then=then)

    @rule()
    def restart(self):
        """The node is killed and restarted: the state is what its row holds."""
        values = [*_state_values(self.cs), E.next_wake(self.cs, self.rules), 0]
        self.db.execute("UPDATE cases SET state = 'ARMED', version = 1")  # unguard the write
        self.db.execute(_UPDATE_STATE + " WHERE case_id = 'c'", values)
        row = self.db.execute(_LOAD_STATE, ("c",)).fetchone()
        restored = state_of(row)
        assert restored == self.cs
        self.cs = restored
        self.advance(self.clock.now())  # the start-up sweep

    # --- after every step ----------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self):
        if not hasattr(self, "cs"):
            return
        now = self.clock.now()
        m = self.model
        m.settle(now)
        if self.cs.state == E.RELEASED:
            assert m.released is not None or m.deadline_due(now) or m.editors_due(now)
            return
        assert not m.deadline_due(now), "silence lasted every + grace and nothing was released"
        assert not m.editors_due(now), "the objection window ended and nothing was released"
        assert m.released is None
        # Editor bookkeeping: the same live requests, pending exactly when the model says so.
        assert (self.cs.state == E.EDITOR_PENDING) == (m.pending_until is not None)
        if m.pending_until is None:
            assert set(self.cs.editors) == set(m.votes)
        else:
            assert self.cs.pending_until == m.pending_until
        assert (self.cs.paused_until is not None) == (m.paused_until is not None)
        # The engine is at a fixed point at `now` and wakes up in the future.
        again, eff = E.advance(self.cs, self.rules, now)
        assert again == self.cs and all(e.kind == "sync_peers" for e in eff)
        wake = E.next_wake(self.cs, self.rules)
        assert wake is None or wake > now or any(e.kind == "sync_peers" for e in eff)


EngineMachine.TestCase.settings = fuzz_settings(100, 0.2)
TestEngineModel = EngineMachine.TestCase
