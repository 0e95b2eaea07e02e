"""Editor releases in the pure engine (docs/protocol.md §4.5, §5.2; issue 11, finding 5).

Regressions: an EDITOR_PENDING case released at min(pending_until, deadline + grace) without the
pre-release sync and without the deadline path's notices; editor requests while PAUSED ended the
objection window during the pause; an objection left requests below the quorum standing at a
node, so a later single request completed a quorum with votes from before the objection;
requests never lapsed.
"""

from __future__ import annotations

import pytest

from escrow_node import engine as E
from escrow_node.errors import Conflict

T = 1_000_000
R = E.Rules(every=100, grace=20, remind=(30,), editor_quorum=2, objection_window=500)


def events(effects):
    return [(e.kind, e.event, e.audience) for e in effects]


def pending(now=T, rules=R):
    cs, _ = E.register(rules, now)
    cs, _ = E.editor_request(cs, rules, "ed1", now)
    cs, _ = E.editor_request(cs, rules, "ed2", now)
    assert cs.state == E.EDITOR_PENDING
    return cs


# --- every release path: the same sync, the same notices -----------------------------------


def test_pending_case_whose_deadline_comes_first_is_synced_before_release():
    cs = pending()
    assert E.release_time(cs, R) == T + 120  # deadline + grace, before the window's end
    # The deadline path runs underneath: reminder, then the overdue warning, as without editors.
    cs, eff = E.advance(cs, R, T + 70)
    assert cs.state == E.EDITOR_PENDING and cs.prior == E.REMINDED
    assert events(eff) == [("notify", "reminder", "reporter")]
    cs, eff = E.advance(cs, R, T + 100)
    assert cs.prior == E.OVERDUE
    assert events(eff) == [("notify", "overdue", "reporter"), ("notify", "overdue", "editors")]
    assert E.next_wake(cs, R) == T + 120
    # At deadline + grace: the peers are asked first (this used to release on the spot).
    same, eff = E.advance(cs, R, T + 120)
    assert same == cs and events(eff) == [("sync_peers", "", "")]
    # A peer had a newer heartbeat: applied before deciding, so no release.
    cs2, eff = E.heartbeat(cs, R, 1, T + 110, T + 120)
    assert ("notify", "checked_in", "editors") in events(eff)
    cs2, eff = E.advance(cs2, R, T + 120, synced=True)
    assert cs2.state == E.EDITOR_PENDING and cs2.prior == E.ARMED and cs2.deadline == T + 210
    # No newer heartbeat anywhere: a deadline release, with the deadline release's notices.
    rel, eff = E.advance(cs, R, T + 120, synced=True)
    assert rel.state == E.RELEASED and rel.release_reason == "deadline"
    assert {a for _, ev, a in events(eff) if ev == "released"} == {
        "recipients",
        "editors",
        "reporter",
    }


def test_objection_returns_to_the_state_that_ran_underneath():
    cs, _ = E.advance(pending(), R, T + 100)
    assert cs.prior == E.OVERDUE
    back, eff = E.objection(cs, R, T + 101)
    assert back.state == E.OVERDUE and back.warned and back.editors == ()
    # Not warned twice: the overdue notice went out while the request was pending.
    assert events(eff) == [("notify", "objection", "editors")]


# --- requests while PAUSED -------------------------------------------------------------------


def test_a_quorum_while_paused_is_held_until_the_pause_ends():
    cs, _ = E.register(R, T)
    cs, _ = E.pause(cs, R, T + 10_000, T + 1)
    cs, eff = E.editor_request(cs, R, "ed1", T + 2)
    assert events(eff) == [("notify", "editor_request", "editors")]
    cs, eff = E.editor_request(cs, R, "ed2", T + 3)
    # The reporter is told at once and may object while paused; the window ends only
    # objection_window after the pause ends.
    assert cs.state == E.EDITOR_PENDING and cs.prior == E.PAUSED
    assert cs.pending_until == T + 10_000 + 500
    assert ("notify", "editor_pending", "reporter") in events(eff)
    # Nothing is released during the pause, however long the clock runs inside it.
    for now in (T + 600, T + 5_000, T + 9_999):
        cs2, eff = E.advance(cs, R, now)
        assert cs2 == cs and eff == []
    assert E.next_wake(cs, R) == T + 10_000
    # The pause ends underneath: the deadline runs again, as it would have.
    cs, eff = E.advance(cs, R, T + 10_000)
    assert cs.state == E.EDITOR_PENDING and cs.prior == E.ARMED
    assert cs.deadline == T + 10_100
    assert ("notify", "pause_ended", "reporter") in events(eff)
    # The reporter can still object, back to the running switch.
    back, _ = E.objection(cs, R, T + 10_050)
    assert back.state == E.ARMED and back.deadline == T + 10_100


def test_a_pause_and_its_window_end_then_the_editors_release_after_sync():
    rules = E.Rules(every=1000, grace=100, editor_quorum=1, objection_window=50)
    cs, _ = E.register(rules, T)
    cs, _ = E.pause(cs, rules, T + 300, T)
    cs, _ = E.editor_request(cs, rules, "ed1", T + 1)
    assert cs.pending_until == T + 350
    cs, eff = E.advance(cs, rules, T + 349)
    assert cs.state == E.EDITOR_PENDING
    _, eff = E.advance(cs, rules, T + 350)
    assert ("sync_peers", "", "") in events(eff)
    rel, _ = E.advance(cs, rules, T + 350, synced=True)
    assert rel.state == E.RELEASED and rel.release_reason == "editors"


# --- fresh quorum after an objection ---------------------------------------------------------


def test_an_objection_clears_requests_below_the_quorum():
    cs, _ = E.register(R, T)
    cs, _ = E.editor_request(cs, R, "ed1", T + 1)
    # The reporter objected (at this node the quorum had not been reached yet).
    cs, eff = E.objection(cs, R, T + 2)
    assert cs.state == E.ARMED and cs.editors == ()
    assert events(eff) == [("notify", "objection", "editors")]
    # One more request after the objection is not a quorum: the old one does not count.
    cs, _ = E.editor_request(cs, R, "ed2", T + 3)
    assert cs.state == E.ARMED and cs.editors == ("ed2",)
    cs, _ = E.editor_request(cs, R, "ed1", T + 4)
    assert cs.state == E.EDITOR_PENDING
    # Nothing to object to at all is still refused.
    fresh, _ = E.register(R, T)
    with pytest.raises(Conflict):
        E.objection(fresh, R, T)


def test_a_re_request_after_an_objection_needs_every_vote_again():
    cs = pending()
    cs, _ = E.objection(cs, R, T + 1)
    assert cs.editors == ()
    cs, _ = E.editor_request(cs, R, "ed1", T + 2)
    assert cs.state == E.ARMED and len(cs.editors) == 1


# --- requests lapse --------------------------------------------------------------------------


def test_partial_requests_lapse_after_one_interval_and_grace():
    assert R.request_lifetime == 120
    cs, _ = E.register(R, T)
    cs, _ = E.heartbeat(cs, R, 1, T + 50, T + 50)
    cs, _ = E.editor_request(cs, R, "ed1", T + 60)
    assert E.next_wake(cs, R) == T + 120  # the reminder comes first
    cs, _ = E.heartbeat(cs, R, 2, T + 100, T + 100)
    assert E.next_wake(cs, R) == T + 170  # the reminder
    cs, _ = E.advance(cs, R, T + 170)
    assert E.next_wake(cs, R) == T + 180  # then the request lapses, before the deadline
    cs2, eff = E.advance(cs, R, T + 180)
    assert cs2.editors == () and cs2.editor_times == () and eff == []
    # A second editor after the lapse does not make a quorum with the lapsed request.
    cs3, _ = E.editor_request(cs, R, "ed2", T + 180)
    assert cs3.state == E.REMINDED and cs3.editors == ("ed2",)
    # Within the lifetime it does.
    cs4, _ = E.editor_request(cs, R, "ed2", T + 179)
    assert cs4.state == E.EDITOR_PENDING


def test_requests_without_a_recorded_time_count_as_lapsed():
    cs, _ = E.register(R, T)
    legacy = E.replace(cs, editors=("ed1",), editor_times=())
    cs2, _ = E.editor_request(legacy, R, "ed2", T + 1)
    assert cs2.state == E.ARMED and cs2.editors == ("ed2",)


# --- found by the model-based test (tests/node/test_engine_model.py) ------------------------


@pytest.mark.parametrize("how", ["pause ends", "resume"])
def test_a_heartbeat_signed_before_a_pause_ended_does_not_shorten_the_deadline(how):
    cs, _ = E.register(R, T)
    cs, _ = E.pause(cs, R, T + 10, T)
    if how == "resume":
        cs, _ = E.resume(cs, R, T + 10)
    else:
        cs, _ = E.advance(cs, R, T + 10)
    assert cs.state == E.ARMED and cs.deadline == T + 110
    # A heartbeat signed at T + 5 (during the pause) arrives late, by gossip.
    cs, _ = E.heartbeat(cs, R, 1, T + 5, T + 10)
    assert cs.deadline == T + 110  # it was T + 105: a release 5 s before the model's
