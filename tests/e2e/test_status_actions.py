"""`velador status`, `pause`, `resume`, `release now|object`, `case destroy` at real nodes."""

from __future__ import annotations

import pytest

from tests.node.builders import T0
from vault.errors import PolicyError
from vault.identity import unlock_identity
from vault.nodeproto.client import NodeClient
from vault.state import LocalState

from .conftest import DAY, EPW, OPW, PW, wait_for


def states(armed):
    return [n.state(armed.case_id) for n in armed.nodes]


def editor_requests(armed, clock, editors=(0, 1)):
    for i in editors:
        ed = unlock_identity(armed.editors[i], EPW)
        for node in armed.nodes:
            with NodeClient(node.card, ed, clock) as c:
                c.release_request(armed.case_id, "detained")


def test_status_each_node_and_disagreement(v, armed, clock):
    v.ok(armed.r, "checkin")
    st = v.json(armed.r, "status", "inv")
    (case,) = st["cases"]
    assert case["local"] == "armed"
    assert case["disagreements"] == []
    for n in case["nodes"]:
        assert n["state"] == "ARMED"
        assert n["last_beat"] == T0
        assert n["deadline"] == T0 + 3 * DAY
        assert (n["editor_requests"], n["editor_quorum"]) == (0, 2)
    # One node alone is paused behind the others' back: status flags the disagreement.
    rep = unlock_identity(armed.r, PW)
    with NodeClient(armed.nodes[0].card, rep, clock) as c:
        c.pause(armed.case_id, T0 + 10 * DAY)
    st = v.json(armed.r, "status")
    lines = st["cases"][0]["disagreements"]
    assert "nodes disagree on state (node-b, node-c: ARMED; node-a: PAUSED)" in lines
    code, out, _ = v(armed.r, "status", "inv")
    assert code == 0
    assert "warning: nodes disagree on state (node-b, node-c: ARMED; node-a: PAUSED)" in out


def test_status_unreachable_node(v, armed):
    armed.nodes[1].kill()
    st = v.json(armed.r, "status", "inv")
    node_b = st["cases"][0]["nodes"][1]
    assert node_b["ok"] is False
    assert node_b["error"].startswith("node node-b is unreachable")
    code, out, _ = v(armed.r, "status", "inv")
    assert code == 0 and "unreachable" in out


def test_pause_and_resume(v, armed, clock):
    out = v.json(armed.r, "pause", "inv", "--until", "2026-01-20")
    assert [n["state"] for n in out["nodes"]] == ["PAUSED"] * 3
    assert {n["paused_until"] for n in out["nodes"]} == {T0 + 19 * DAY}
    assert states(armed) == ["PAUSED"] * 3
    # Past the old deadline nothing happens while paused.
    clock.advance(5 * DAY)
    assert states(armed) == ["PAUSED"] * 3
    out = v.json(armed.r, "resume", "inv")
    assert {n["state"] for n in out["nodes"]} == {"ARMED"}
    assert {n["deadline"] for n in out["nodes"]} == {clock.now() + 3 * DAY}
    # A relative --until works too.
    out = v.json(armed.r, "pause", "inv", "--until", "2d")
    assert {n["paused_until"] for n in out["nodes"]} == {clock.now() + 2 * DAY}


def test_pause_bad_inputs(v, armed):
    line, hint = v.fails(armed.r, "pause", "inv", "--until", "2025-01-01", code=75)
    assert line == "velador: error: --until '2025-01-01' is in the past"
    line, hint = v.fails(armed.r, "pause", "inv", "--until", "soon", code=75)
    assert line == "velador: error: --until 'soon' is not a date"
    assert hint == (
        "velador: hint: use YYYY-MM-DD, YYYY-MM-DDTHH:MM (your local time) or a duration such as 3d"
    )
    line, _ = v.fails(armed.r, "pause", "nope", "--until", "3d", code=66)
    assert line == "velador: error: no case named 'nope'"
    line, hint = v.fails(armed.r, "resume", "inv", code=75)
    assert line == (
        "velador: error: resume reached 0 of 3 nodes (node-a: cannot resume: the case is ARMED, "
        "not PAUSED; node-b: cannot resume: the case is ARMED, not PAUSED; node-c: cannot "
        "resume: the case is ARMED, not PAUSED)"
    )
    assert hint == (
        "velador: hint: run the same command again; 'velador status inv' shows each node's state"
    )


def test_editor_quorum_objection_then_release(v, armed, clock, mexico_time):
    v.ok(armed.r, "checkin")
    editor_requests(armed, clock)
    st = v.json(armed.r, "status", "inv")["cases"][0]
    for n in st["nodes"]:
        assert n["state"] == "EDITOR_PENDING"
        assert (n["editor_requests"], n["editor_quorum"]) == (2, 2)
        assert n["pending_until"] == clock.now() + 12 * 3600
    out = v.ok(armed.r, "status", "inv")
    assert (
        "inv: editor release pending (2 of 2 editors asked); you can object until "
        "Thu 1 Jan 2026 06:00 CST (in 12 hours) with 'velador release object inv'"
    ) in out
    # The reporter objects inside the window: every node goes back to ARMED.
    out = v.json(armed.r, "release", "object", "inv")
    assert [n["state"] for n in out["nodes"]] == ["ARMED"] * 3
    # Objecting when nothing is pending is refused, with the node's reason.
    line, _ = v.fails(armed.r, "release", "object", "inv", code=75)
    assert line.startswith("velador: error: objection reached 0 of 3 nodes (node-a: nothing to")
    # The editors ask again and the reporter stays silent: the nodes release after the window.
    editor_requests(armed, clock)
    clock.advance(12 * 3600 + 1)
    for node in armed.nodes:
        node.wait_state(armed.case_id, "RELEASED")
    # The reporter's status says it was released, and by the editors' rule.
    out = " ".join(v.ok(armed.r, "status", "inv").split())
    assert "Case inv was RELEASED on Thu 1 Jan 06:00 CST (now): your editors asked" in out


def test_release_now(v, armed, clock):
    line, hint = v.fails(armed.r, "release", "now", "inv", code=75)
    assert line == (
        "velador: error: refusing to release inv to your recipients now without confirmation"
    )
    assert hint == "velador: hint: add --yes"
    assert states(armed) == ["ARMED"] * 3
    out = v.json(armed.r, "release", "now", "inv", "--yes")
    assert [n["state"] for n in out["nodes"]] == ["RELEASED"] * 3
    assert LocalState(armed.r).case("inv").status == "released"
    outlet = unlock_identity(armed.outlets[0], OPW)
    with NodeClient(armed.nodes[0].card, outlet, clock) as c:
        assert len(c.fetch_release(armed.case_id).envelopes) == 1
    released = "velador: error: case inv was released; checking in no longer changes anything"
    line, _ = v.fails(armed.r, "checkin", code=75)
    assert line == released
    line, _ = v.fails(armed.r, "checkin", "inv", code=75)
    assert line == released
    # Every view names the rule: the reporter released it.
    out = v.ok(armed.r, "case", "list", passphrase=None)
    assert "you released it yourself ('velador release now')" in " ".join(out.split())


def test_destroy_with_a_node_down_then_again(v, armed, clock):
    armed.nodes[2].kill()
    line, _ = v.fails(armed.r, "case", "destroy", "inv", "--yes", code=69)
    assert line.startswith("velador: error: destroy reached 2 of 3 nodes (node-c: node node-c is")
    assert LocalState(armed.r).case("inv").status == "active"  # not everywhere yet
    armed.nodes[2].start()
    code, _, err = v(armed.r, "case", "destroy", "inv", "--yes")
    assert code == 0, err
    assert "Case inv is destroyed at every node." in err
    assert states(armed) == ["DESTROYED"] * 3
    for node in armed.nodes:
        assert node.query("SELECT * FROM envelopes WHERE case_id = ?", armed.case_id) == []
    assert LocalState(armed.r).case("inv").status == "destroyed"
    # Afterwards no node releases anything, even past every deadline.
    clock.advance(30 * DAY)
    outlet = unlock_identity(armed.outlets[0], OPW)
    with NodeClient(armed.nodes[0].card, outlet, clock) as c, pytest.raises(PolicyError) as e:
        c.fetch_release(armed.case_id)
    assert "the case is not released (state DESTROYED)" in e.value.message
    line, _ = v.fails(armed.r, "release", "now", "inv", "--yes", code=75)
    assert line == "velador: error: cannot release: case inv was destroyed"
    card = v.ok(armed.r, "case", "card", "inv").strip()
    # The outlet's recovery fails with one clear line.
    line, _ = v.fails(
        armed.outlets[0], "recover", card, "--out", clock.path.parent / "x", code=66, passphrase=OPW
    )
    assert line == (
        f"velador: error: case {armed.case_id} was destroyed: the 3 node(s) that held it have "
        "deleted its envelopes"
    )
    wait_for(lambda: states(armed) == ["DESTROYED"] * 3, what="still destroyed")
