"""`velador checkin` and `velador agent` against real node processes."""

from __future__ import annotations

import os
import re
import stat

import pytest

from tests.node.builders import T0
from vault.errors import PolicyError
from vault.identity import unlock_identity
from vault.nodeproto.client import NodeClient
from vault.state import LocalState

from .conftest import DAY, DURESS, OPW, create_args, wait_for


def node_seq(node, case_id):
    return node.query("SELECT seq FROM cases WHERE case_id = ?", case_id)[0][0]


def test_normal_life_many_intervals_with_restarts(v, armed, clock):
    # Given an armed case, when the reporter checks in every two days for two weeks while nodes
    # restart, then every node stays ARMED, the deadline follows each check-in, and no
    # recipient can fetch anything.
    seqs = []
    for i in range(7):
        clock.advance(2 * DAY)
        if i == 3:
            armed.nodes[1].term()
            armed.nodes[1].start()
        out = v.json(armed.r, "checkin")
        (case,) = out["cases"]
        assert [n["ok"] for n in case["nodes"]] == [True] * 3
        assert {n["state"] for n in case["nodes"]} == {"ARMED"}
        assert case["next_deadline"] == clock.now() + 3 * DAY
        seqs.append(case["seq"])
    assert seqs == sorted(set(seqs))
    for node in armed.nodes:
        assert node.state(armed.case_id) == "ARMED"
        assert node_seq(node, armed.case_id) == seqs[-1]
    outlet = unlock_identity(armed.outlets[0], OPW)
    client = armed.nodes[0].client(outlet)
    with pytest.raises(PolicyError) as e:
        client.fetch_release(armed.case_id)
    assert "the case is not released (state ARMED)" in e.value.message


def test_checkin_table_and_next_deadline(v, armed, clock, mexico_time):
    code, out, err = v(armed.r, "checkin")
    assert code == 0, err
    for name in ("node-a", "node-b", "node-c"):
        assert name in out
    assert out.count(" ok ") == 3
    assert "inv: next deadline Sat 3 Jan 2026 18:00 CST (in 3 days)" in err
    # The table is titled with the check-in's local time, not its raw sequence number.
    assert "inv: check-in of Wed 31 Dec 18:00 CST" in out
    assert str(T0) not in out and "#" not in out


def test_sequence_is_durable_and_strictly_increasing(armed):
    st = LocalState(armed.r)
    a = st.next_heartbeat_seq("somecase1", T0)
    b = LocalState(armed.r).next_heartbeat_seq("somecase1", T0)  # a "restarted" process
    c = LocalState(armed.r).next_heartbeat_seq("somecase1", T0 - 100)  # clock went back
    assert a == T0 and b == T0 + 1 and c == T0 + 2


def test_unreachable_nodes_queue_and_agent_resends_without_passphrase(v, armed, clock):
    for node in armed.nodes:
        node.kill()
    # When no node can be reached, the check-in is signed, queued and the command says so.
    line, hint = v.fails(armed.r, "checkin", code=69)
    assert line == "velador: error: no node of inv could be reached; the check-in is queued"
    assert hint == (
        "velador: hint: check your connection; 'velador agent' re-sends queued check-ins"
    )
    signed_at = clock.now()
    queued = LocalState(armed.r).queued_heartbeats()
    assert len(queued) == 3
    seq = queued[0]["seq"]
    # An hour later the nodes are back; the agent, with no passphrase at all, re-sends the
    # already-signed heartbeat.
    clock.advance(3600)
    for node in armed.nodes:
        node.start()
    out = v.json(armed.r, "agent", "--once", "--no-notify", passphrase=None)
    # A node may already have it from a peer's gossip by the time the agent reaches it.
    outcomes = [r["outcome"] for r in out["resent"]]
    assert len(outcomes) == 3 and set(outcomes) <= {"delivered", "superseded"}, outcomes
    assert "delivered" in outcomes
    views = LocalState(armed.r).node_views(armed.case_id)
    assert [row["deadline"] for row in views] == [signed_at + 3 * DAY] * 3
    for node in armed.nodes:
        assert node_seq(node, armed.case_id) == seq
        row = node.query("SELECT last_beat, deadline FROM cases WHERE case_id = ?", armed.case_id)
        # The deadline runs from the signed time of the check-in, not from the re-send.
        assert tuple(row[0]) == (signed_at, signed_at + 3 * DAY)
    assert LocalState(armed.r).queued_heartbeats() == []
    # Nothing left to do on the next round.
    assert v.json(armed.r, "agent", "--once", "--no-notify", passphrase=None)["resent"] == []


def test_one_node_down_is_queued_and_gossip_or_agent_delivers(v, armed, clock):
    armed.nodes[2].kill()
    code, out, err = v(armed.r, "checkin", "--json")
    assert code == 0, err
    import json

    nodes = json.loads(out)["cases"][0]["nodes"]
    assert [n.get("queued", False) for n in nodes] == [False, False, True]
    seq = json.loads(out)["cases"][0]["seq"]
    armed.nodes[2].start()
    # Either a peer's gossip or the agent's re-send gets it there; both are fine.
    res = v.json(armed.r, "agent", "--once", "--no-notify", passphrase=None)
    assert [r["outcome"] for r in res["resent"]] in (["delivered"], ["superseded"])
    wait_for(lambda: node_seq(armed.nodes[2], armed.case_id) == seq, what="node-c to have it")


def test_checkin_with_nothing_armed(v, people):
    line, hint = v.fails(people.r, "checkin", code=75)
    assert line == "velador: error: no armed case to check in"
    assert hint == ("velador: hint: create one with 'velador case create NAME --node ALIAS ...'")


def test_wrong_passphrase_signs_nothing(v, armed):
    line, _ = v.fails(armed.r, "checkin", code=77, passphrase="not it")
    assert line == "velador: error: wrong passphrase for this identity"
    assert all(node_seq(n, armed.case_id) == 0 for n in armed.nodes)


def _shape(text: str) -> str:
    """Digits and day names (check-ins are titled with their local time) do not count."""
    return re.sub(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\b", "Day", re.sub(r"\d", "0", text))


def test_duress_checkin_looks_normal_and_alerts(v, armed, clock):
    # Given a normal check-in's output, when the reporter checks in with the duress passphrase,
    # then the output has exactly the same shape, and every node recorded the duress.
    clock.advance(DAY)
    code, normal_out, normal_err = v(armed.r, "checkin")
    assert code == 0
    clock.advance(DAY)
    code, duress_out, duress_err = v(armed.r, "checkin", passphrase=DURESS)
    assert code == 0
    assert _shape(duress_out) == _shape(normal_out)
    assert _shape(duress_err) == _shape(normal_err)
    for node in armed.nodes:
        wait_for(
            lambda node=node: node.query(
                "SELECT duress_at FROM cases WHERE case_id = ?", armed.case_id
            )[0][0],
            what="duress recorded",
        )
        assert node.state(armed.case_id) == "ARMED"  # policy: alert (editors), no release


def test_duress_release_policy(v, people, net, tmp_path, clock):
    net(3)
    info = v.json(people.r, *create_args(3, tmp_path, "--duress", "release"))
    (tmp_path / "notas.md").write_text("contratos\n")
    v.ok(people.r, "deposit", "inv", tmp_path / "notas.md")  # audit: a case holding something
    normal = v.json(people.r, "checkin")
    clock.advance(60)
    duress = v.json(people.r, "checkin", passphrase=DURESS)
    # The receipts look like a normal check-in's...
    assert [n["state"] for n in duress["cases"][0]["nodes"]] == ["ARMED"] * 3
    assert duress["cases"][0]["next_deadline"] == normal["cases"][0]["next_deadline"] + 60
    # ...while the nodes release, as the policy says.
    outlet = unlock_identity(people.outlets[0], OPW)
    from vault.switch import parse_case_card

    card = parse_case_card(v.ok(people.r, "case", "card", "inv"))
    for node_card in card.nodes:
        with NodeClient(node_card, outlet, clock) as client:
            wait_for(lambda client=client: _released(client, info["case_id"]), what="release")
    # The captor asks for the status with the duress passphrase: it shows the cover, armed.
    st = v.json(people.r, "status", "inv", passphrase=DURESS)["cases"][0]
    assert [n["state"] for n in st["nodes"]] == ["ARMED"] * 3
    assert st["disagreements"] == []
    assert v.json(people.r, "audit", "inv", passphrase=DURESS)["recoverable"] is True
    # The reporter's real passphrase shows the truth.
    st = v.json(people.r, "status", "inv")["cases"][0]
    assert [n["state"] for n in st["nodes"]] == ["RELEASED"] * 3


def _released(client, case_id):
    try:
        return client.fetch_release(case_id)
    except PolicyError:
        return None


def test_agent_reminds_before_deadlines_once_each(v, armed, clock, tmp_path, monkeypatch):
    # A fake notify-send records desktop notifications.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "notified"
    script = bindir / "notify-send"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    v.ok(armed.r, "checkin")  # deadline T0 + 3d; reminders 12h and 2h before

    def agent():
        return v.json(armed.r, "agent", "--once", passphrase=None)["reminders"]

    clock.set(T0 + DAY)
    assert agent() == []
    clock.set(T0 + 3 * DAY - 11 * 3600)
    (rem,) = agent()
    assert rem["offset"] == 12 * 3600
    assert rem["text"] == (
        "inv: check in within 11h (deadline 2026-01-04T00:00:00Z): run 'velador checkin'"
    )
    assert agent() == []  # once per reminder
    clock.set(T0 + 3 * DAY - 3600)
    assert [r["offset"] for r in agent()] == [7200]
    clock.set(T0 + 3 * DAY + 60)
    (late,) = agent()
    assert late["text"] == (
        "inv: your check-in deadline has PASSED; the nodes release at 2026-01-05T00:00:00Z "
        "unless you run 'velador checkin'"
    )
    # Without --json the reminder is a terminal line and a desktop notification.
    clock.set(T0 + 3 * DAY + 120)
    code, _, err = v(armed.r, "agent", "--once", passphrase=None)
    assert code == 0 and err == ""  # already given
    v.ok(armed.r, "checkin")
    clock.advance(3 * DAY - 3600)
    code, _, err = v(armed.r, "agent", "--once", passphrase=None)
    assert code == 0
    assert "reminder: inv: check in within 1 hour" in err
    wait_for(lambda: log.exists() and "A check-in is due soon" in log.read_text(), what="notify")
    assert "inv" not in log.read_text()  # no case name in a desktop notification (its argv)


class GossipWins(NodeClient):
    """node-b receives the heartbeat from a peer just before the reporter's own request."""

    def heartbeat(self, heartbeat):
        if self.card.name == "node-b":
            super().heartbeat(heartbeat)
        return super().heartbeat(heartbeat)


def test_gossip_race_shows_the_cover_receipt_even_under_duress(
    v, people, net, tmp_path, clock, monkeypatch
):
    import vault.switch

    ns = net(3)
    info = v.json(people.r, *create_args(3, tmp_path, "--duress", "release"))
    monkeypatch.setattr(vault.switch, "NodeClient", GossipWins)
    normal = v.json(people.r, "checkin")["cases"][0]
    clock.advance(60)
    duress = v.json(people.r, "checkin", passphrase=DURESS)["cases"][0]
    for out in (normal, duress):
        assert [n["ok"] for n in out["nodes"]] == [True] * 3, out
        assert [n["state"] for n in out["nodes"]] == ["ARMED"] * 3
        assert len({n["deadline"] for n in out["nodes"]}) == 1
    assert duress["next_deadline"] == normal["next_deadline"] + 60
    # node-b really did release (the policy says so); its row just never showed it.
    ns[1].wait_state(info["case_id"], "RELEASED")


def test_a_gossip_race_still_moves_the_agents_deadline(v, armed, clock, monkeypatch):
    """A node that had the heartbeat from a peer first must still count as told: the agent
    reminds from the earliest deadline it knows, and a view left at the old deadline silenced
    every later reminder (found as a flaky agent test under load)."""
    import vault.switch

    monkeypatch.setattr(vault.switch, "NodeClient", GossipWins)
    v.ok(armed.r, "checkin")
    clock.advance(2 * DAY)
    out = v.json(armed.r, "checkin")["cases"][0]
    views = LocalState(armed.r).node_views(armed.case_id)
    assert {row["deadline"] for row in views} == {out["next_deadline"]}
    clock.set(out["next_deadline"] - 3600)
    rems = v.json(armed.r, "agent", "--once", passphrase=None)["reminders"]
    assert [r["offset"] for r in rems] == [7200]


class GossipWinsEverywhere(NodeClient):
    """Every node had the heartbeat from a peer before the reporter's own request: no receipt
    at all comes back, only stale_heartbeat (seen in a full-suite run under load)."""

    def heartbeat(self, heartbeat):
        super().heartbeat(heartbeat)
        return super().heartbeat(heartbeat)


def test_when_every_node_had_it_first_the_views_still_move(v, armed, clock, monkeypatch):
    import vault.switch

    monkeypatch.setattr(vault.switch, "NodeClient", GossipWinsEverywhere)
    v.ok(armed.r, "checkin")
    clock.advance(2 * DAY)
    out = v.json(armed.r, "checkin")["cases"][0]
    assert all(n["ok"] for n in out["nodes"]), out
    views = LocalState(armed.r).node_views(armed.case_id)
    assert views and {row["deadline"] for row in views} == {out["next_deadline"]}
    clock.set(out["next_deadline"] - 3600)
    rems = v.json(armed.r, "agent", "--once", passphrase=None)["reminders"]
    assert [r["offset"] for r in rems] == [7200]


def test_interrupted_checkin_never_reuses_a_sequence_number(v, armed, monkeypatch):
    import vault.switch

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    real = vault.switch.run_parallel
    monkeypatch.setattr(vault.switch, "run_parallel", crash)
    code, _, _ = v(armed.r, "checkin")
    assert code == 130
    allocated = LocalState(armed.r).db.execute("SELECT seq FROM hb_seq").fetchone()[0]
    monkeypatch.setattr(vault.switch, "run_parallel", real)
    out = v.json(armed.r, "checkin")
    assert out["cases"][0]["seq"] == allocated + 1
