"""Reporter actions under duress (issue 11, finding 3 c; docs/protocol.md §4.4).

A pause, resume, destroy, objection or rotation sent with the duress marker is answered exactly
like the normal one (compared with a twin case at the same node driven with the normal
passphrase), while the real case is not paused, destroyed or un-objected: the editors get the
silent duress alarm, and a "release" policy releases. Real HTTP to an in-thread node.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from vault.errors import PolicyError
from vault.nodeproto.messages import make_heartbeat

DAY = 86400
HIDDEN = ("case_id", "policy_hash", "ref", "signer")
"""Fields that differ between two twin cases whatever happens (ids, nonces)."""


def visible(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in HIDDEN}


def twins(inproc, world_for, **kw):
    """Two identical cases at one node; the second one's reporter client signs under duress."""
    out = []
    for duress in (False, True):
        w = world_for(inproc.card, **kw)
        inproc.client(w.reporter).register_case(w.policy, w.envs_for(inproc.card))
        w.client = inproc.client(replace(w.reporter, duress=duress))
        w.free = inproc.client(w.reporter)  # the real passphrase, for checks
        w.cid = w.policy.case_id
        out.append(w)
    return out


def real_state(inproc, w) -> str:
    return inproc.query("SELECT state FROM cases WHERE case_id = ?", w.cid)[0][0]


def editor_events(inproc, w, editor=0) -> list[str]:
    return [
        n["notice"]["event"]
        for n in inproc.client(w.editors[editor]).inbox()
        if n["notice"]["case_id"] == w.cid
    ]


def reporter_events(inproc, w) -> list[str]:
    return [n["notice"]["event"] for n in w.free.inbox() if n["notice"]["case_id"] == w.cid]


def both(a, b, call):
    """The same call on both twins: (normal answer, duress answer), or the refusals' texts."""
    out = []
    for w in (a, b):
        try:
            out.append(visible(call(w)))
        except PolicyError as exc:
            out.append(exc.message.replace(w.cid, "CASE"))
    return out


def test_a_forced_pause_answers_like_a_pause_but_raises_the_alarm_and_does_not_pause(
    inproc, world_for
):
    a, b = twins(inproc, world_for, every=DAY, grace=3600, duress="alert")
    until = inproc.clock.now() + 300 * DAY
    normal, forced = both(a, b, lambda w: w.client.pause(w.cid, until))
    # The answers are the same, PAUSED until the date asked...
    assert forced == normal
    assert forced["state"] == "PAUSED" and forced["paused_until"] == until
    # ...and so is every later status the captor asks for.
    normal, forced = both(a, b, lambda w: w.client.status(w.cid))
    assert forced == normal and forced["state"] == "PAUSED"
    # But the real case was not paused: the editors got the silent alarm, the reporter nothing.
    assert real_state(inproc, b) == "ARMED"
    assert w_status(b)["state"] == "ARMED"
    assert "duress" in editor_events(inproc, b) and "paused" not in editor_events(inproc, b)
    assert "duress" not in reporter_events(inproc, b)
    # A year of quiet is impossible: the deadline runs, and the case releases on time.
    inproc.clock.advance(DAY + 3600 + 1)
    inproc.sweep()
    assert real_state(inproc, b) == "RELEASED"
    assert real_state(inproc, a) == "PAUSED"
    # Nothing reached the reporter's inbox that a paused case would not send ("overdue",
    # "released"...): the captor holds the reporter's devices.
    assert reporter_events(inproc, b) == reporter_events(inproc, a) == []
    # The captor still sees the pause.
    normal, forced = both(a, b, lambda w: w.client.status(w.cid))
    assert forced == normal and forced["state"] == "PAUSED"


def w_status(w) -> dict:
    return w.free.status(w.cid)


def test_a_forced_resume_after_a_forced_pause_answers_like_a_resume(inproc, world_for):
    a, b = twins(inproc, world_for, every=DAY, grace=3600, duress="alert")
    until = inproc.clock.now() + 30 * DAY
    both(a, b, lambda w: w.client.pause(w.cid, until))
    inproc.clock.advance(3600)
    normal, forced = both(a, b, lambda w: w.client.resume(w.cid))
    assert forced == normal and forced["state"] == "ARMED"
    # Resuming twice is refused the same way.
    normal, forced = both(a, b, lambda w: w.client.resume(w.cid))
    assert forced == normal and "not PAUSED" in forced


def test_a_forced_destroy_answers_destroyed_but_keeps_the_envelopes(inproc, world_for):
    a, b = twins(inproc, world_for, every=DAY, grace=3600, duress="alert")
    normal, forced = both(a, b, lambda w: w.client.destroy(w.cid))
    assert forced == normal and forced["state"] == "DESTROYED"
    normal, forced = both(a, b, lambda w: w.client.status(w.cid))
    assert forced == normal and forced["envelopes"] == 0
    # Destroying again gives the same refusal the client reads as "already done".
    normal, forced = both(a, b, lambda w: w.client.destroy(w.cid))
    assert forced == normal and "the case is DESTROYED" in forced
    assert real_state(inproc, b) == "ARMED"
    assert inproc.query("SELECT count(*) FROM envelopes WHERE case_id = ?", b.cid)[0][0] == 2
    assert "duress" in editor_events(inproc, b) and "destroyed" not in editor_events(inproc, b)


def test_a_forced_objection_does_not_cancel_the_editor_release(inproc, world_for):
    a, b = twins(inproc, world_for, every=DAY, grace=3600, objection_window=600)
    for w in (a, b):
        for e in w.editors:
            inproc.client(e).release_request(w.cid, "detained")
    normal, forced = both(a, b, lambda w: w.client.status(w.cid))
    assert forced == normal and forced["state"] == "EDITOR_PENDING"
    normal, forced = both(a, b, lambda w: w.client.object(w.cid))
    assert forced == normal and forced["state"] == "ARMED"
    normal, forced = both(a, b, lambda w: w.client.status(w.cid))
    assert forced == normal and forced["state"] == "ARMED"
    assert real_state(inproc, b) == "EDITOR_PENDING"
    assert "duress" in editor_events(inproc, b) and "objection" not in editor_events(inproc, b)
    inproc.clock.advance(601)
    inproc.sweep()
    assert real_state(inproc, b) == "RELEASED"
    assert real_state(inproc, a) == "ARMED"


def test_a_normal_request_drops_the_cover(inproc, world_for):
    _a, b = twins(inproc, world_for, every=DAY, grace=3600)
    b.client.pause(b.cid, inproc.clock.now() + 30 * DAY)
    assert b.client.status(b.cid)["state"] == "PAUSED"
    # The reporter, free again, checks in with the normal passphrase: the truth from then on.
    b.free.heartbeat(make_heartbeat(b.policy, b.reporter.sign_key, 1, inproc.clock.now()))
    assert b.client.status(b.cid)["state"] == "ARMED"
    assert inproc.query("SELECT count(*) FROM covers")[0][0] == 0


@pytest.mark.parametrize("action", ["pause", "resume", "destroy", "object", "rotate", "checkin"])
def test_after_a_duress_release_every_forced_action_answers_like_normal(inproc, world_for, action):
    # Given twin cases whose policy releases on duress, one checked in normally, the other
    # under duress (so it is RELEASED at the node)
    a, b = twins(inproc, world_for, every=DAY, grace=3600, duress="release")
    for w in (a, b):
        hb = make_heartbeat(w.policy, w.reporter.sign_key, 1, inproc.clock.now(), w is b)
        w.client.heartbeat(hb)
    assert real_state(inproc, b) == "RELEASED"
    inproc.clock.advance(3600)
    until = inproc.clock.now() + 30 * DAY
    # When the captor forces an action, then the answer is the normal one, never "RELEASED"
    if action == "resume":
        both(a, b, lambda w: w.client.pause(w.cid, until))
    calls = {
        "pause": lambda w: w.client.pause(w.cid, until),
        "resume": lambda w: w.client.resume(w.cid),
        "destroy": lambda w: w.client.destroy(w.cid),
        "object": lambda w: w.client.object(w.cid),
        "rotate": lambda w: w.client.register_case(rotated(w, world_for).policy, w.new_envs),
        "checkin": lambda w: w.client.heartbeat(
            make_heartbeat(w.policy, w.reporter.sign_key, 2, inproc.clock.now(), w is b)
        ),
    }
    normal, forced = both(a, b, calls[action])
    assert forced == normal
    assert "RELEASED" not in str(forced)
    normal, forced = both(a, b, lambda w: w.client.status(w.cid))
    assert forced == normal
    assert real_state(inproc, b) == "RELEASED"


def rotated(w, world_for):
    people = {"reporter": w.reporter, "outsider": w.outsider}
    people.update({f"editor{i}": e for i, e in enumerate(w.editors)})
    people.update({f"outlet{i}": r for i, r in enumerate(w.recipients)})
    new = world_for(*w.node_cards, people=people, replaces=w.policy, every=DAY, grace=3600)
    w.new_envs = new.envs_for(w.node_cards[0])
    return new


def test_a_forced_rotation_is_not_applied_but_looks_applied(inproc, world_for):
    a, b = twins(inproc, world_for, every=DAY, grace=3600, duress="alert")
    news = {}

    def rotate(w):
        news[w.cid] = rotated(w, world_for)
        return w.client.register_case(news[w.cid].policy, w.new_envs)

    normal, forced = both(a, b, rotate)
    assert forced == normal
    assert forced["action"] == "register"
    # The captor's status names the new policy; the node still holds the old one.
    sa, sb = a.client.status(a.cid), b.client.status(b.cid)
    assert sa["policy_hash"] == news[a.cid].policy.hash
    assert sb["policy_hash"] == news[b.cid].policy.hash
    assert w_status(b)["policy_hash"] == b.policy.hash
    assert "duress" in editor_events(inproc, b)
