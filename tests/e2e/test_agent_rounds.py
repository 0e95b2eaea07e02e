"""`velador agent` runs for days (issue 12, item 1): a real process, more than 50 rounds on the
nodes' test clock, with reminders, a queued check-in delivered after a node comes back, and a
laptop that sleeps (the clock jumps by hours between two rounds).

Before the fix every round after the first died in APScheduler's thread with sqlite3's "objects
created in a thread can only be used in that same thread": no reminder after the first round.
"""

from __future__ import annotations

from cli.timefmt import local_time

from .agentproc import AgentProc
from .conftest import wait_for

H = 3600
DAY = 86400


def test_agent_process_runs_many_rounds_through_outage_and_sleep(v, armed, clock, tmp_path):
    # Given a case checked in at T0: deadline T0+3d, release T0+4d, reminders 12h and 2h before.
    t0 = clock.now()
    v.ok(armed.r, "checkin")
    agent = AgentProc(armed.r, clock, tmp_path / "agent.log", "--no-notify")
    try:
        agent.wait_round(t0)
        # When the agent runs hour after hour (59 rounds): no reminder before deadline - 12h.
        for _ in range(59):
            agent.step(H)
        assert agent.lines("reminder:") == [], agent.text()
        # Then exactly one reminder at deadline - 12h, and no repeat in the next rounds.
        agent.step(H)
        assert [ln.split(" reminder: ")[1] for ln in agent.lines("reminder:")] == [
            # The deadline in the reader's local zone (cli/timefmt.py), as the agent shows it.
            f"inv: check in within 12 hours (deadline {local_time(t0 + 3 * DAY, clock.now())}): "
            "run 'velador checkin'"
        ]

        # A node goes down; the check-in reaches the two others and is queued for it.
        down = armed.nodes[0]
        down.kill()
        t1 = clock.now()
        out = v.json(armed.r, "checkin")
        seq = out["cases"][0]["seq"]
        agent.step(H)
        agent.step(H)
        assert agent.lines(f"queued check-in #{seq} to node-a: retry"), agent.text()
        assert len(agent.lines("reminder:")) == 1  # the stale deadline does not remind again
        # The node comes back: the next rounds deliver the queued check-in (or find that a peer
        # already passed it on), and the node has it.
        down.start()
        agent.step(H)
        agent.step(H)
        sent = agent.lines(f"queued check-in #{seq} to node-a:")
        assert sent[-1].endswith(("delivered", "superseded")), agent.text()
        assert down.query("SELECT seq FROM cases WHERE case_id = ?", armed.case_id)[0][0] == seq

        # The laptop sleeps: the clock jumps from t1+4h to 1h before the new deadline (t1+3d).
        agent.step(3 * DAY - 5 * H)
        lines = agent.lines("reminder:")
        assert len(lines) == 2, agent.text()
        # Only the most urgent reminder is given on waking: 2h before, "within 1h"; the 12h one
        # it slept through is not given late.
        assert "inv: check in within 1 hour " in lines[1]
        for _ in range(5):
            agent.step(600)
        assert len(agent.lines("reminder:")) == 2  # no duplicate
        # It sleeps again, past the deadline (before release): one "PASSED" reminder.
        agent.step(2 * H)
        lines = agent.lines("reminder:")
        assert len(lines) == 3 and "deadline has PASSED" in lines[2], agent.text()
        assert t1 + 3 * DAY < clock.now() < t1 + 4 * DAY
        for _ in range(3):
            agent.step(600)
        assert len(agent.lines("reminder:")) == 3
        # More than 50 rounds, all in one process that is still running.
        assert agent.rounds()[-1][0] >= 50
        assert agent.proc.poll() is None
    finally:
        code = agent.stop()
    text = agent.text()
    assert code == 0, text
    assert "Traceback" not in text and "ProgrammingError" not in text


def test_superseded_resend_updates_the_view_the_reminders_use(v, armed, clock, monkeypatch):
    # A node cut off from the laptop only gets the check-in from its peers (gossip); the agent's
    # re-send then finds it "superseded". Before the fix the agent kept that node's previous
    # deadline and reminded "check in within 1h" of a deadline the check-in had already moved.
    import vault.switch

    from .test_partition import CutOff

    t0 = clock.now()
    v.ok(armed.r, "checkin")  # every node: deadline t0+3d
    cut = armed.nodes[2]
    monkeypatch.setattr(vault.switch, "NodeClient", CutOff)
    monkeypatch.setattr(CutOff, "blocked", {cut.card.fingerprint})
    clock.advance(DAY)
    out = v.json(armed.r, "checkin")
    seq = out["cases"][0]["seq"]
    assert [n.get("queued", False) for n in out["cases"][0]["nodes"]] == [False, False, True]
    wait_for(
        lambda: cut.query("SELECT seq FROM cases WHERE case_id = ?", armed.case_id)[0][0] == seq,
        what="gossip to the cut-off node",
    )
    res = v.json(armed.r, "agent", "--once", "--no-notify", passphrase=None)
    assert [r["outcome"] for r in res["resent"]] == ["superseded"]
    # One hour before the OLD deadline: the deadline is a day later now, nothing to remind.
    clock.set(t0 + 3 * DAY - H)
    assert v.json(armed.r, "agent", "--once", "--no-notify", passphrase=None)["reminders"] == []
