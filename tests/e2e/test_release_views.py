"""The reporter learns of a release (issue 12, item 3): after the nodes release by silence,
`case list`, `status` and `checkin` say plainly that the case was released, when (local time with
its zone name), by which rule, and what it means; with one node down too. Real nodes, real CLI.
"""

from __future__ import annotations

from .conftest import DAY

RELEASED_LINE = (
    "Case inv was RELEASED on Sun 4 Jan 18:00 CST ({rel}): you did not check in before the "
    "deadline and the grace period ran out."
)
MEANING = (
    "Your recipient outlets can now open the material you deposited in this case.",
    "Checking in no longer changes anything for this case.",
)


def silence_until_released(armed, clock) -> int:
    # T0 is 2026-01-01 00:00 UTC; every 3 days, grace 1 day: released at T0 + 4 days + 1 s,
    # i.e. Sunday 4 January 18:00 in Mexico City.
    clock.advance(3 * DAY + DAY + 1)
    for node in armed.nodes:
        node.wait_state(armed.case_id, "RELEASED")
    (at,) = {n.query("SELECT released_at FROM cases")[0][0] for n in armed.nodes}
    return at


def says_released(text: str, rel: str = "now") -> None:
    flat = " ".join(text.split())
    assert RELEASED_LINE.format(rel=rel) in flat, text
    for line in MEANING:
        assert line in flat, text


def test_silence_release_shown_by_case_list_status_and_checkin(v, armed, clock, mexico_time):
    v.ok(armed.r, "checkin")
    assert "armed" in v.ok(armed.r, "case", "list", passphrase=None)
    silence_until_released(armed, clock)

    # Offline, before any node was asked: case list says the release time passed.
    out = v.ok(armed.r, "case", "list", passphrase=None)
    assert "The nodes were due to release case inv on Sun 4 Jan 18:00 CST (now)" in " ".join(
        out.split()
    )

    # status: the header says RELEASED (not "armed" above RELEASED rows), with when and why.
    code, out, err = v(armed.r, "status", "inv")
    assert code == 0, err
    says_released(out)
    assert "inv (" + armed.case_id + "): RELEASED" in out
    assert ": armed" not in out
    st = v.json(armed.r, "status", "inv")["cases"][0]
    assert st["local"] == "released"
    assert st["release"]["rule"] == "deadline" and st["release"]["complete"] is True

    # case list, a day later and with no passphrase: it was recorded locally.
    clock.advance(DAY)
    out = v.ok(armed.r, "case", "list", passphrase=None)
    assert "RELEASED" in out and "armed" not in out
    says_released(out, rel="1 day ago")
    info = v.json(armed.r, "case", "list", passphrase=None)[0]
    assert info["release"]["released_at_utc"] == "2026-01-05T00:00:01Z"

    # audit says it too; its "no" is only about what was deposited (nothing here), not about
    # nodes that are "RELEASED".
    code, out, err = v(armed.r, "audit", "inv")
    assert code == 3
    says_released(out, rel="1 day ago")
    assert "the case holds nothing yet" in err and "RELEASED" not in err

    # checkin: not "failed: cannot check in", but the release, and a non-zero exit code.
    code, out, err = v(armed.r, "checkin")
    assert code == 75, err
    says_released(out, rel="1 day ago")
    assert "velador: error: case inv was released; checking in no longer changes anything" in err
    assert "could be reached" not in err and "failed" not in out


def test_checkin_with_one_node_down_learns_the_release(v, armed, clock, mexico_time):
    v.ok(armed.r, "checkin")
    silence_until_released(armed, clock)
    armed.nodes[0].kill()
    # The first command after the release is a check-in, with node-a down.
    code, out, err = v(armed.r, "checkin")
    assert code == 75, (out, err)
    says_released(out)
    assert "no node" not in err and "could be reached" not in err
    assert "velador: error: case inv was released; checking in no longer changes anything" in err
    assert "queued" not in err  # checking in no longer changes anything: nothing is queued
    # Offline afterwards, every node down: case list still knows.
    for node in armed.nodes[1:]:
        node.kill()
    out = v.ok(armed.r, "case", "list", passphrase=None)
    assert "RELEASED" in out
    says_released(out)
    # status with every node down still shows the release it recorded.
    code, out, err = v(armed.r, "status", "inv")
    assert code == 0, err
    says_released(out)


def test_status_reads_without_the_passphrase(v, armed, clock, mexico_time):
    # Given a check-in (its receipts are kept on the laptop), when the reporter runs status
    # with no passphrase available (no terminal, no VELADOR_PASSPHRASE) or with --offline, then
    # status shows what the nodes last said, with how old each answer is, and asks nothing.
    v.ok(armed.r, "checkin")
    clock.advance(3600)
    for args in (("status", "inv"), ("status", "inv", "--offline")):
        code, out, err = v(armed.r, *args, passphrase=None)
        assert code == 0, err
        flat = " ".join(out.split())
        assert "as the nodes last said" in flat
        assert out.count("ARMED") == 3
        assert "1 hour ago" in flat  # when each node answered
        assert "the nodes were not asked now" in flat
    st = v.json(armed.r, "status", "--offline", passphrase=None)
    assert st["offline"] is True
    assert [n["state"] for n in st["cases"][0]["nodes"]] == ["ARMED"] * 3
    # --offline never contacts a node, even with the passphrase at hand: every node is down.
    for node in armed.nodes:
        node.kill()
    code, out, _ = v(armed.r, "status", "--offline")
    assert code == 0 and "unreachable" not in out
    # After a release learned earlier, the offline view says it too.
    for node in armed.nodes:
        node.start()
    silence_until_released(armed, clock)
    v.ok(armed.r, "status", "inv")
    code, out, _ = v(armed.r, "status", "inv", "--offline", passphrase=None)
    assert code == 0
    flat = " ".join(out.split())
    assert "Case inv was RELEASED on Sun 4 Jan 19:00 CST (now): you did not check in" in flat
    assert "inv (" + armed.case_id + "): RELEASED, as the nodes last said" in flat
