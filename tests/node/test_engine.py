"""The deadline state machine (docs/protocol.md §5), tested as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escrow_node import engine as E
from escrow_node.errors import Conflict, Forbidden, StaleHeartbeat

T = 1_000_000
R = E.Rules(every=100, grace=20, remind=(30, 10), editor_quorum=2, objection_window=15)


def events(effects):
    return [(e.kind, e.event, e.audience) for e in effects]


def armed(now=T, rules=R):
    cs, eff = E.register(rules, now)
    assert eff == []
    return cs


def test_register_is_armed_with_a_full_interval():
    cs = armed()
    assert (cs.state, cs.seq, cs.deadline) == (E.ARMED, 0, T + 100)
    assert E.next_wake(cs, R) == T + 70  # first reminder


def test_reminders_then_overdue_then_sync_then_release():
    cs = armed()
    cs, eff = E.advance(cs, R, T + 69)
    assert cs.state == E.ARMED and eff == []
    cs, eff = E.advance(cs, R, T + 70)
    assert cs.state == E.REMINDED and events(eff) == [("notify", "reminder", "reporter")]
    assert E.next_wake(cs, R) == T + 90
    cs, eff = E.advance(cs, R, T + 90)
    assert cs.reminded == 2 and events(eff) == [("notify", "reminder", "reporter")]
    cs, eff = E.advance(cs, R, T + 100)
    assert cs.state == E.OVERDUE
    assert events(eff) == [("notify", "overdue", "reporter"), ("notify", "overdue", "editors")]
    assert E.next_wake(cs, R) == T + 120
    cs2, eff = E.advance(cs, R, T + 119)
    assert cs2 == cs and eff == []
    cs2, eff = E.advance(cs, R, T + 120)
    assert cs2 == cs and events(eff) == [("sync_peers", "", "")]
    cs, eff = E.advance(cs, R, T + 120, synced=True)
    assert cs.state == E.RELEASED and cs.release_reason == "deadline" and cs.released_at == T + 120
    assert ("release", "deadline", "") in events(eff)
    assert {a for k, ev, a in events(eff) if ev == "released"} == {
        "recipients",
        "editors",
        "reporter",
    }
    assert E.next_wake(cs, R) is None


def test_missed_reminders_collapse_into_one_and_chain_to_overdue():
    cs, eff = E.advance(armed(), R, T + 100)
    assert cs.state == E.OVERDUE
    assert events(eff)[0] == ("notify", "overdue", "reporter")
    cs, eff = E.advance(armed(), R, T + 95)
    assert cs.state == E.REMINDED and cs.reminded == 2 and len(eff) == 1


def test_a_node_down_for_the_whole_grace_needs_sync_before_release():
    cs, eff = E.advance(armed(), R, T + 500)
    assert cs.state == E.OVERDUE and events(eff)[-1] == ("sync_peers", "", "")


def test_heartbeat_rearms_and_refuses_old_sequences():
    cs, _ = E.advance(armed(), R, T + 100)
    cs, eff = E.heartbeat(cs, R, 1, T + 105, T + 105)
    assert cs.state == E.ARMED and cs.deadline == T + 205 and cs.seq == 1
    assert events(eff) == [("notify", "checked_in", "editors")]
    with pytest.raises(StaleHeartbeat):
        E.heartbeat(cs, R, 1, T + 106, T + 106)
    with pytest.raises(StaleHeartbeat):
        E.heartbeat(cs, R, 0, T + 106, T + 106)


def test_deadline_uses_the_signed_time_so_late_gossip_does_not_extend_it():
    cs, _ = E.heartbeat(armed(), R, 1, T + 10, T + 60)
    assert cs.deadline == T + 110
    cs, _ = E.heartbeat(cs, R, 2, T + 5, T + 61)  # newer seq, older clock: never shortens
    assert cs.deadline == T + 110


def test_a_heartbeat_that_leaves_the_deadline_in_the_past_is_not_a_check_in():
    # Given an overdue case (deadline T+100, the overdue notice sent)
    cs, eff = E.advance(armed(), R, T + 100)
    assert cs.state == E.OVERDUE and [e[1] for e in events(eff)].count("overdue") >= 1
    # When a newer heartbeat arrives whose signed time does not move the deadline past now
    # (late gossip, or a reporter's clock behind; found by the chaos harness, invariant e)
    cs2, eff = E.heartbeat(cs, R, 1, T - 50, T + 110)
    # Then the case stays overdue, silently: no "checked in", no second "overdue"
    assert cs2.state == E.OVERDUE and cs2.seq == 1 and cs2.deadline == T + 100
    assert events(eff) == []
    # and it still releases at deadline + grace
    cs3, eff = E.advance(cs2, R, T + 120, synced=True)
    assert cs3.state == E.RELEASED
    # When it moves the deadline, but not past now (signed after the deadline, arrived late)
    cs4, eff = E.heartbeat(cs, R, 1, T + 5, T + 110)
    assert cs4.state == E.OVERDUE and cs4.deadline == T + 105 and events(eff) == []
    # A heartbeat that does move it past now is a check-in, as before
    cs5, eff = E.heartbeat(cs, R, 1, T + 105, T + 110)
    assert cs5.state == E.ARMED and events(eff) == [("notify", "checked_in", "editors")]


def test_under_an_editor_request_an_old_heartbeat_leaves_the_case_overdue_underneath():
    cs, _ = E.advance(armed(), R, T + 100)
    cs, _ = E.editor_request(cs, R, "ed1", T + 101)
    cs, _ = E.editor_request(cs, R, "ed2", T + 102)
    assert cs.state == E.EDITOR_PENDING and cs.prior == E.OVERDUE
    cs2, eff = E.heartbeat(cs, R, 1, T - 50, T + 103)
    assert cs2.state == E.EDITOR_PENDING and cs2.prior == E.OVERDUE and events(eff) == []


def test_heartbeat_from_the_future_is_refused():
    with pytest.raises(Conflict):
        E.heartbeat(armed(), R, 1, T + E.FUTURE_SKEW + 1, T)


def test_terminal_states_refuse_everything():
    rel, _ = E.release_now(armed(), R, T)
    gone, _ = E.destroy(armed(), R, T)
    for cs in (rel, gone):
        for call in (
            lambda c: E.heartbeat(c, R, 9, T, T),
            lambda c: E.pause(c, R, T + 10, T),
            lambda c: E.release_now(c, R, T),
            lambda c: E.destroy(c, R, T),
            lambda c: E.editor_request(c, R, "ed", T),
            lambda c: E.objection(c, R, T),
            lambda c: E.resume(c, R, T),
        ):
            with pytest.raises(Conflict):
                call(cs)
        assert E.advance(cs, R, T + 10**6) == (cs, [])


def test_pause_stops_the_deadline_and_ends_by_itself():
    cs, eff = E.pause(armed(), R, T + 1000, T + 50)
    assert cs.state == E.PAUSED and events(eff) == [("notify", "paused", "editors")]
    assert E.next_wake(cs, R) == T + 1000
    assert E.advance(cs, R, T + 999) == (cs, [])
    cs2, eff = E.advance(cs, R, T + 1000)
    assert cs2.state == E.ARMED and cs2.deadline == T + 1100
    cs3, _ = E.heartbeat(cs, R, 1, T + 60, T + 60)
    assert cs3.state == E.PAUSED and cs3.seq == 1
    with pytest.raises(Conflict):
        E.pause(armed(), R, T + 366 * 86400 + 1, T)
    with pytest.raises(Conflict):
        E.pause(armed(), R, T, T)


def test_resume():
    cs, _ = E.pause(armed(), R, T + 1000, T)
    cs, _eff = E.resume(cs, R, T + 10)
    assert cs.state == E.ARMED and cs.deadline == T + 110
    with pytest.raises(Conflict):
        E.resume(cs, R, T + 11)


def test_destroy_with_and_without_delay():
    cs, eff = E.destroy(armed(), R, T)
    assert cs.state == E.DESTROYED and ("delete_envelopes", "", "") in events(eff)
    rules = E.Rules(every=100, grace=20, destroy_delay=50, editor_quorum=1, objection_window=5)
    cs, eff = E.destroy(armed(rules=rules), rules, T)
    assert cs.state == E.DESTROYING and cs.destroy_at == T + 50
    assert ("notify", "destroy_pending", "editors") in events(eff)
    assert E.destroy(cs, rules, T + 1) == (cs, [])
    with pytest.raises(Conflict):
        E.heartbeat(cs, rules, 1, T + 1, T + 1)
    # The dead-man deadline no longer applies, but editors can still act during the delay.
    cs2, _ = E.advance(cs, rules, T + 49)
    assert cs2.state == E.DESTROYING
    pend, _ = E.editor_request(cs, rules, "ed1", T + 10)
    assert pend.state == E.EDITOR_PENDING and pend.prior == E.DESTROYING
    back, _ = E.objection(pend, rules, T + 11)
    assert back.state == E.DESTROYING and back.destroy_at == T + 50
    done, eff = E.advance(cs, rules, T + 50)
    assert done.state == E.DESTROYED and ("delete_envelopes", "", "") in events(eff)


def test_editor_quorum_objection_and_release():
    cs, eff = E.editor_request(armed(), R, "ed1", T + 1)
    assert cs.state == E.ARMED and cs.editors == ("ed1",)
    assert E.editor_request(cs, R, "ed1", T + 2) == (cs, [])  # same editor twice counts once
    cs, eff = E.editor_request(cs, R, "ed2", T + 3)
    assert cs.state == E.EDITOR_PENDING and cs.pending_until == T + 18
    assert ("notify", "editor_pending", "reporter") in events(eff)
    # A heartbeat (perhaps coerced) does not cancel it; only an objection does.
    hb, _ = E.heartbeat(cs, R, 1, T + 4, T + 4)
    assert hb.state == E.EDITOR_PENDING
    back, eff = E.objection(hb, R, T + 5)
    assert back.state == E.ARMED and back.editors == () and back.deadline == T + 104
    assert events(eff) == [("notify", "objection", "editors")]
    with pytest.raises(Conflict):
        E.objection(cs, R, T + 18)  # window closed
    # The end of the window goes through the pre-release sync, like a deadline release.
    same, eff = E.advance(cs, R, T + 18)
    assert same == cs and events(eff) == [("sync_peers", "", "")]
    rel, eff = E.advance(cs, R, T + 18, synced=True)
    assert rel.state == E.RELEASED and rel.release_reason == "editors"
    assert {a for k, ev, a in events(eff) if ev == "released"} == {
        "recipients",
        "editors",
        "reporter",
    }


def test_editor_release_disabled_and_zero_window():
    no = E.Rules(every=100, grace=20, editor_quorum=0)
    with pytest.raises(Forbidden):
        E.editor_request(armed(rules=no), no, "ed", T)
    now = E.Rules(every=100, grace=20, editor_quorum=1, objection_window=0)
    cs, eff = E.editor_request(armed(rules=now), now, "ed", T)
    assert cs.state == E.EDITOR_PENDING and ("sync_peers", "", "") in events(eff)
    cs, _eff = E.advance(cs, now, T, synced=True)
    assert cs.state == E.RELEASED


def test_destroy_refused_while_editor_release_pending():
    cs, _ = E.editor_request(armed(), R, "a", T)
    cs, _ = E.editor_request(cs, R, "b", T)
    with pytest.raises(Conflict):
        E.destroy(cs, R, T + 1)


def test_duress_alert_looks_normal_and_alerts_editors_only():
    normal, _ = E.heartbeat(armed(), R, 1, T + 5, T + 5)
    duress, eff = E.heartbeat(armed(), R, 1, T + 5, T + 5, duress=True)
    assert duress.state == normal.state and duress.deadline == normal.deadline
    assert duress.duress_at == T + 5
    assert events(eff) == [("notify", "duress", "editors")]


def test_duress_release_releases_without_telling_the_reporter():
    rules = E.Rules(every=100, grace=20, duress="release")
    cs, eff = E.heartbeat(armed(rules=rules), rules, 1, T, T, duress=True)
    assert cs.state == E.RELEASED and cs.release_reason == "duress"
    assert "reporter" not in {a for _, _, a in events(eff)}


# --- properties ---------------------------------------------------------------------------

ACTIONS = st.sampled_from(
    [
        "tick",
        "tick",
        "tick",
        "beat",
        "beat",
        "pause",
        "resume",
        "destroy",
        "editor",
        "object",
        "now",
        "duress",
    ]
)
RULES = st.builds(
    E.Rules,
    every=st.integers(1, 500),
    grace=st.integers(0, 200),
    remind=st.lists(st.integers(1, 400), max_size=3, unique=True).map(
        lambda r: tuple(sorted(r, reverse=True))
    ),
    editor_quorum=st.integers(0, 3),
    objection_window=st.integers(0, 100),
    duress=st.sampled_from(["alert", "release"]),
    destroy_delay=st.integers(0, 100),
)


def run(rules, script):
    now = T
    cs, _ = E.register(rules, now)
    seq = 0
    releases = 0
    history = []
    for action, dt, who in script:
        now += dt
        try:
            if action == "tick":
                new, eff = E.advance(cs, rules, now)
                if any(e.kind == "sync_peers" for e in eff):
                    new, more = E.advance(new, rules, now, synced=True)
                    eff = eff + more
            elif action in ("beat", "duress"):
                seq += 1
                new, eff = E.heartbeat(cs, rules, seq, now, now, duress=action == "duress")
            elif action == "pause":
                new, eff = E.pause(cs, rules, now + dt + 1, now)
            elif action == "resume":
                new, eff = E.resume(cs, rules, now)
            elif action == "destroy":
                new, eff = E.destroy(cs, rules, now)
            elif action == "editor":
                new, eff = E.editor_request(cs, rules, f"ed{who}", now)
            elif action == "object":
                new, eff = E.objection(cs, rules, now)
            else:
                new, eff = E.release_now(cs, rules, now)
        except (Conflict, Forbidden):
            continue
        releases += sum(1 for e in eff if e.kind == "release")
        history.append((action, cs, new, eff, now))
        cs = new
    return cs, releases, history


SCRIPT = st.lists(st.tuples(ACTIONS, st.integers(0, 300), st.integers(0, 3)), max_size=40)


@settings(max_examples=400, deadline=None)
@given(RULES, SCRIPT)
def test_invariants(rules, script):
    cs, releases, history = run(rules, script)
    # Never released twice; released iff the state says so.
    assert releases <= 1
    assert (cs.state == E.RELEASED) == (releases == 1)
    for action, old, new, eff, now in history:
        # Terminal states are final.
        if old.state in E.TERMINAL:
            assert new == old
        rel = [e for e in eff if e.kind == "release"]
        if rel:
            reason = rel[0].event
            assert new.state == E.RELEASED
            if reason == "deadline":
                # A deadline release only after the grace period, without a newer heartbeat.
                assert action == "tick" and now >= old.deadline + rules.grace
            elif reason == "editors":
                assert len(new.editors) >= rules.editor_quorum > 0
            elif reason == "duress":
                assert action == "duress" and rules.duress == "release"
            else:
                assert reason == "reporter" and action == "now"
        # advance() reaches a fixed point: running it again at the same time does nothing.
        if new.state not in E.TERMINAL and action == "tick":
            again, eff2 = E.advance(new, rules, now)
            assert again == new and not [e for e in eff2 if e.kind != "sync_peers"]
        # The next wake-up is never in the past after a tick.
        wake = E.next_wake(new, rules)
        if action == "tick" and wake is not None:
            assert wake > now


@settings(max_examples=200, deadline=None)
@given(RULES, st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_a_reporter_who_checks_in_in_time_is_never_released(rules, gaps):
    now = T
    cs, _ = E.register(rules, now)
    for seq, gap in enumerate(gaps, start=1):
        gap = gap % max(1, rules.every)  # always strictly before the deadline
        # Tick at every intermediate wake-up, as the scheduler would.
        target = now + gap
        while (w := E.next_wake(cs, rules)) is not None and w <= target:
            cs, _eff = E.advance(cs, rules, w, synced=True)
            assert cs.state != E.RELEASED
        now = target
        cs, _ = E.heartbeat(cs, rules, seq, now, now)
        assert cs.state == E.ARMED


@settings(max_examples=200, deadline=None)
@given(RULES, st.integers(0, 10**6))
def test_a_silent_reporter_is_always_released(rules, start_gap):
    cs, _ = E.register(rules, T)
    now = T
    for _ in range(20):
        w = E.next_wake(cs, rules)
        if w is None:
            break
        now = max(now, w)
        cs, _ = E.advance(cs, rules, now, synced=True)
    assert cs.state == E.RELEASED
    assert cs.released_at == T + rules.every + rules.grace
