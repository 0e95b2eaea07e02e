"""Rotations that miss nodes (issue 11, finding 2; issue 12 item 9), with real nodes.

A node that was down during `case rotate`, or that was restored from a backup taken before the
rotation, still holds the previous policy. It must keep counting the reporter's check-ins (no
release while she checks in), `checkin` and `status` must say loudly that the rotation is not
finished, and `case arm` (or `case rotate --resume`) must finish it.
"""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from cli.node_cmds import node as node_cli
from vault.state import LocalState

from .conftest import DAY, OPW, create_args, wait_for

ROUNDS = 4
"""Check-ins two days apart: 8 days, twice the 3d + 1d a silent node waits before releasing."""


def node_row(node, case_id):
    rows = node.query(
        "SELECT state, seq, policy_hash, deadline FROM cases WHERE case_id = ?", case_id
    )
    return rows[0]


def checkin_rounds(v, armed, clock, watched, expect_warning: str | None):
    """Check in every two days through twice deadline + grace; after each check-in the watched
    node must have applied it and stay armed with a deadline ahead."""
    for _ in range(ROUNDS):
        clock.advance(2 * DAY)
        out = v.json(armed.r, "checkin")["cases"][0]
        assert [n["ok"] for n in out["nodes"]] == [True] * 3, out
        if expect_warning:
            assert any(expect_warning in w for w in out["warnings"]), out["warnings"]
            assert all("velador case arm inv" in w for w in out["warnings"])
        wait_for(
            lambda s=out["seq"]: node_row(watched, armed.case_id)["seq"] == s,
            what="the node that missed the rotation to apply the check-in",
        )
        row = node_row(watched, armed.case_id)
        assert row["state"] == "ARMED", row["state"]
        assert row["deadline"] > clock.now()


def test_a_rotation_that_misses_a_node_never_releases_it_while_the_reporter_checks_in(
    v, armed, clock
):
    c = armed.nodes[2]
    v.ok(armed.r, "checkin")
    old = LocalState(armed.r).case("inv").policy
    # Given node c is down while the case is rotated
    c.term()
    code, _, err = v(armed.r, "case", "rotate", "inv", "--yes")
    assert code != 0 and "NOT armed" in err
    new = LocalState(armed.r).case("inv").policy
    assert new.replaces == old.hash
    assert node_row(c, armed.case_id)["policy_hash"] == old.hash
    # When it comes back and the reporter keeps checking in through twice deadline + grace
    c.start()
    checkin_rounds(v, armed, clock, c, "rotation of case inv is NOT finished")
    # Then it never released, and status says the same thing loudly
    st = v.json(armed.r, "status", "inv")
    assert any("rotation of case inv is NOT finished" in w for w in st["cases"][0]["warnings"])
    assert any("node-c" in w for w in st["cases"][0]["warnings"])
    # And `case rotate --resume` finishes the rotation: the node now holds the new policy
    v.ok(armed.r, "case", "rotate", "inv", "--resume")
    assert node_row(c, armed.case_id)["policy_hash"] == new.hash
    code, _, err = v(armed.r, "checkin")
    assert code == 0 and "WARNING" not in err, err
    assert v.json(armed.r, "status", "inv")["cases"][0]["warnings"] == []


def test_a_node_restored_from_a_backup_before_the_rotation_does_not_release(
    v, armed, clock, tmp_path
):
    c = armed.nodes[2]
    v.ok(armed.r, "checkin")
    old = LocalState(armed.r).case("inv").policy
    # Given a backup of node c taken before a rotation that reached every node
    backup = tmp_path / "node-c-backup.db"
    src, dst = sqlite3.connect(str(c.dir / "node.db")), sqlite3.connect(str(backup))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    assert v.json(armed.r, "case", "rotate", "inv", "--yes")["armed"] is True
    new = LocalState(armed.r).case("inv").policy
    # When node c is restored from that backup (it holds the old policy again)
    assert c.term() == 0
    res = CliRunner().invoke(node_cli, ["restore", "--data", str(c.dir), str(backup)])
    assert res.exit_code == 0, res.output
    c.start()
    assert node_row(c, armed.case_id)["policy_hash"] == old.hash
    # Then the reporter's check-ins keep it armed through twice deadline + grace, and checkin
    # notices from the node's receipt that it is behind and says so
    checkin_rounds(v, armed, clock, c, None)
    code, _, err = v(armed.r, "checkin")
    assert code == 0 and "rotation of case inv is NOT finished" in err and "node-c" in err
    # And `case arm` registers the new policy there again
    v.ok(armed.r, "case", "arm", "inv")
    assert node_row(c, armed.case_id)["policy_hash"] == new.hash
    code, _, err = v(armed.r, "checkin")
    assert code == 0 and "WARNING" not in err, err


def test_a_case_not_armed_at_every_node_warns_at_checkin_and_status(v, people, net, tmp_path):
    """Issue 12 item 9: which nodes, and the command that fixes it."""
    c = net(3)[2]
    c.term()
    code, _, err = v(people.r, *create_args(3, tmp_path))
    assert code != 0 and "NOT armed" in err
    code, _, err = v(people.r, "checkin")
    assert code == 0, err
    assert "Case inv is NOT armed at every node: node node-c" in err
    assert "velador case arm inv" in err
    st = v.json(people.r, "status", "inv")
    assert any("NOT armed at every node: node node-c" in w for w in st["cases"][0]["warnings"])
    code, _, err = v(people.r, "status", "inv")
    assert "NOT armed at every node: node node-c" in err
    c.start()
    v.ok(people.r, "case", "arm", "inv")
    code, _, err = v(people.r, "checkin")
    assert code == 0 and "WARNING" not in err, err


def test_the_original_case_card_recovers_after_two_rotations(v, armed, tmp_path):
    """Issue 11 finding 5: a card pins one policy; every honest node serves the chain of the
    reporter's replacements back to it, so the first card still works after two rotations,
    here with a node that missed both and was brought up to date with the chain."""
    c = armed.nodes[2]
    first = tmp_path / "data" / "antes"
    first.mkdir(parents=True)
    (first / "old.txt").write_text("deposited under the first key\n")
    v.ok(armed.r, "deposit", "inv", first)
    card = v.ok(armed.r, "case", "card", "inv").strip()
    p0 = LocalState(armed.r).case("inv").policy
    # Given two rotations that node c missed, finished later with `case arm`
    c.term()
    for _ in range(2):
        code, _, err = v(armed.r, "case", "rotate", "inv", "--yes")
        assert code != 0 and "NOT armed" in err
    p2 = LocalState(armed.r).case("inv").policy
    assert p2.replaces != p0.hash
    c.start()
    assert node_row(c, armed.case_id)["policy_hash"] == p0.hash
    v.ok(armed.r, "case", "arm", "inv")
    assert node_row(c, armed.case_id)["policy_hash"] == p2.hash
    later = tmp_path / "data" / "despues"
    later.mkdir(parents=True)
    (later / "new.txt").write_text("deposited under the third key\n")
    v.ok(armed.r, "deposit", "inv", later)
    v.ok(armed.r, "release", "now", "inv", "--yes")
    # When an outlet recovers with the ORIGINAL card
    out = tmp_path / "recovered"
    code, stdout, err = v(armed.outlets[0], "recover", card, "--out", out, passphrase=OPW)
    # Then every node counts and both eras of deposits come back
    assert code == 0, err
    assert "lying" not in stdout + err
    assert (out / "antes" / "old.txt").read_text() == "deposited under the first key\n"
    assert (out / "despues" / "new.txt").read_text() == "deposited under the third key\n"


def test_a_laptop_that_kept_no_earlier_version_still_checks_in_at_the_behind_node(v, armed, clock):
    """A rotation made before this laptop kept earlier policies (an upgrade): the node that
    missed it is still checked in, with the current version (which it accepts)."""
    c = armed.nodes[2]
    v.ok(armed.r, "checkin")
    c.term()
    code, _, _ = v(armed.r, "case", "rotate", "inv", "--yes")
    assert code != 0
    state = LocalState(armed.r)
    with state.tx():
        state.db.execute("DELETE FROM policy_history")
    c.start()
    checkin_rounds(v, armed, clock, c, "rotation of case inv is NOT finished")


def test_a_pause_reaches_the_node_that_missed_the_rotation(v, armed, clock):
    """A paused reporter stops checking in: a node left out of the pause would release."""
    c = armed.nodes[2]
    c.term()
    code, _, _ = v(armed.r, "case", "rotate", "inv", "--yes")
    assert code != 0
    c.start()
    out = v.json(armed.r, "pause", "inv", "--until", "30d")
    assert [n["node"] for n in out["nodes"]] == ["node-a", "node-b", "node-c"]
    assert c.state(armed.case_id) == "PAUSED"
