"""The chaos harness inside `make test`: a short seeded run against real nodes, and proof that
each invariant checker fails when fed a violation (tests/chaos/harness.py lists the invariants).

`make chaos` runs the long version (>= 200 fault cycles); `python -m tests.chaos.run --seed S`
replays a seed.
"""

from __future__ import annotations

import collections
import json
import sqlite3
from pathlib import Path

import pytest

from escrow_node import audit
from escrow_node.db import Store
from tests.chaos import adversary as adv
from tests.chaos import invariants as inv
from tests.chaos.harness import Settings, audit_check, run_chaos

RULES = inv.Rules(every=3600, grace=600, reminders=2)
T = 1_767_225_600


def case(**kw) -> inv.CaseView:
    base = dict(
        case_id="case-1",
        state="ARMED",
        seq=3,
        last_beat=T,
        registered=T - 7200,
        released_at=None,
        release_reason=None,
        next_wake=T + 3600,
    )
    base.update(kw)
    return inv.CaseView(**base)


# --- the short real run -----------------------------------------------------------------------


@pytest.mark.integration
def test_short_chaos_run_holds_every_invariant():
    # Given five real nodes, a reporter and two recipients under seeded faults for 4 cycles,
    # When the run winds down (heal, restart, reporter silent) so every case completes,
    # Then no invariant was violated and every kind of check actually ran.
    summary = run_chaos(
        Settings(
            seed=20261123,
            cycles=4,
            subprocess_audit=False,
            lose_answer=0.0,
            hostile_rate=0.0,
            duress_rate=0.0,
        ),
        say=lambda m: None,
    )
    assert summary["fault_cycles"] == 4
    assert summary["cases_complete"] == summary["cases"] >= 1
    assert summary["releases"] == 5 * summary["cases"]
    assert summary["heartbeats_acked"] > 0
    assert summary["kills"] + summary["restarts"] + summary["partitions"] > 0
    assert summary["dropped_requests"] + summary["delayed_requests"] > 0
    assert set(summary["invariant_checks_passed"]) == set("abcdef")
    assert summary["orphans_killed"] == 0  # every node stopped on SIGTERM
    assert summary["processes_still_running"] == 0


@pytest.mark.integration
def test_short_adversarial_run_holds_every_invariant():
    # Given the same cluster where every cycle brings an adversarial fault: peers that drip,
    # stall, answer without end or answer garbage, strangers registering cases that name fake
    # (tarpit) nodes, one node's clock jumping days ahead, and duress check-ins,
    # When the run winds down,
    # Then every honest case still completed (released everywhere, recovered, notified), no
    # node released on a jumped clock, and nothing public told a duress check-in apart.
    summary = run_chaos(
        Settings(
            seed=7,
            cycles=6,
            subprocess_audit=False,
            lose_answer=0.0,
            hostile_rate=1.0,
            duress_rate=0.5,
        ),
        say=lambda m: None,
    )
    assert summary["cases_complete"] == summary["cases"] >= 1
    assert sum(summary["hostile_peer_answers"].values()) > 0
    assert summary["hostile_registrations_accepted_at_nodes"] > 0
    assert summary["clock_jumps"] >= 1
    assert summary["duress_checkins"] >= 1
    assert {"a", "b", "h"} <= set(summary["invariant_checks_passed"])
    assert summary["processes_still_running"] == 0


# --- (g), (h): the adversarial checkers catch fabricated violations ---------------------------


def test_release_on_a_jumped_clock_with_reachable_peers_is_caught():
    assert adv.check_jumped_release("node-a", "case-1", False, reachable_peers=3, peers=4)
    # Not while the reporter is silent, and not when the node could ask no majority of peers
    # (a release must not be preventable by taking peers down).
    assert not adv.check_jumped_release("node-a", "case-1", True, reachable_peers=4, peers=4)
    assert not adv.check_jumped_release("node-a", "case-1", False, reachable_peers=2, peers=4)


def test_a_public_tell_of_duress_is_caught():
    calm = {"/v1/health": (200, {"status": "ok"}), "/v1/card": (200, {"card": "c"}),
            "/metrics": (404, False)}  # fmt: skip
    assert not adv.check_public_views("node-a", calm, dict(calm))
    told = dict(calm, **{"/v1/health": (200, {"status": "ok", "alarm": True})})
    assert adv.check_public_views("node-a", calm, told)
    exposed = dict(calm, **{"/metrics": (200, True)})
    assert adv.check_public_views("node-a", exposed, exposed)


def test_a_duress_receipt_unlike_a_normal_one_is_caught():
    normal = {"ref": "r", "state": "ARMED", "deadline": T + 3600, "release_at": T + 4200}
    keys = frozenset(normal)
    assert not adv.check_receipt_alike("node-a", normal, keys, T, 3600)
    assert adv.check_receipt_alike("node-a", dict(normal, duress=True), keys, T, 3600)
    assert adv.check_receipt_alike("node-a", dict(normal, state="RELEASED"), keys, T, 3600)
    assert adv.check_receipt_alike("node-a", dict(normal, deadline=T + 60), keys, T, 3600)


# --- (a) false release: the checker catches fabricated early releases --------------------------


def _node_db(tmp_path: Path) -> Path:
    """A node database with the real schema (escrow_node/db.py), no node process."""
    path = tmp_path / "node.db"
    Store(path).close()
    return path


def _insert_case(path: Path, **cols) -> None:
    row = dict(
        case_id="case-1", policy_hash="h", policy="{}", reporter="r", state="ARMED", seq=0,
        last_beat=T, deadline=T + 3600, reminded=0, warned=0, editors="[]", registered=T,
        updated=T, version=1,
    )  # fmt: skip
    row.update(cols)
    conn = sqlite3.connect(path)
    names = ", ".join(row)
    conn.execute(
        f"INSERT INTO cases ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values())
    )
    conn.commit()
    conn.close()


def _read(path: Path) -> inv.NodeView:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return inv.read_node("node-a", conn, inv.AuditCache())
    finally:
        conn.close()


def test_fabricated_early_release_row_is_caught(tmp_path):
    # Given a node database whose case says RELEASED one second before last check-in + every
    # + grace,
    path = _node_db(tmp_path)
    hb = {"body": {"seq": 4, "time": T}}
    _insert_case(
        path, state="RELEASED", seq=4, last_beat=T, released_at=T + 3600 + 600 - 1,
        release_reason="deadline", last_heartbeat=json.dumps(hb),
    )  # fmt: skip
    view = _read(path)
    # When the release checker reads it through the same code path the harness uses,
    bad = inv.check_release("node-a", view.cases["case-1"], RULES, {}, [])
    # Then it reports a false release.
    assert [v.invariant for v in bad] == ["a"]
    assert "before its own last check-in" in bad[0].text


def test_release_on_time_is_not_flagged():
    cv = case(state="RELEASED", released_at=T + 4200, release_reason="deadline")
    assert inv.check_release("node-a", cv, RULES, {}, []) == []


def test_release_for_another_reason_is_flagged():
    cv = case(state="RELEASED", released_at=T + 4200, release_reason="duress")
    assert [v.invariant for v in inv.check_release("node-a", cv, RULES, {}, [])] == ["a"]


def test_release_despite_an_acknowledged_heartbeat_is_caught():
    # The node's own row looks fine (it forgot the heartbeat), but the reporter holds its receipt.
    cv = case(state="RELEASED", released_at=T + 4200, release_reason="deadline")
    ack = inv.Ack("node-a", "case-1", 4, T + 1000, "ref", 1)
    bad = inv.check_release("node-a", cv, RULES, {}, [ack])
    assert len(bad) == 1 and "acknowledged heartbeat 4" in bad[0].text
    other = inv.Ack("node-b", "case-1", 4, T + 1000, "ref", 1)  # another node's receipt
    assert inv.check_release("node-a", cv, RULES, {}, [other]) == []


def test_release_while_a_reachable_peer_held_a_newer_heartbeat_is_caught():
    cv = case(state="RELEASED", released_at=T + 4200, release_reason="deadline")
    newer = dict(seq=4, time=T + 1000)
    bad = inv.check_release(
        "node-a", cv, RULES, {"node-b": inv.PeerKnowledge(**newer, reachable=True)}, []
    )
    assert len(bad) == 1 and "reachable peer node-b" in bad[0].text
    # The design allows it when the peer could not be asked, or did not answer in time:
    for k in (
        inv.PeerKnowledge(**newer, reachable=False),
        inv.PeerKnowledge(**newer, reachable=True, sync_failed=True),
        inv.PeerKnowledge(seq=3, time=T, reachable=True),  # nothing newer than the node's own
        inv.PeerKnowledge(seq=4, time=T - 1, reachable=True),  # newer, but too old to matter
    ):
        assert inv.check_release("node-a", cv, RULES, {"node-b": k}, []) == []


# --- (b) liveness ------------------------------------------------------------------------------


def test_node_not_released_after_the_bound_is_caught():
    cv = case(state="OVERDUE", last_beat=T, registered=T - 100)
    assert inv.check_liveness("node-a", cv, T + 4199, T, RULES) == []
    bad = inv.check_liveness("node-a", cv, T + 4200, T, RULES)
    assert [v.invariant for v in bad] == ["b"]
    assert inv.check_liveness("node-a", None, T, T, RULES)[0].invariant == "b"
    released = case(state="RELEASED", released_at=T + 4200)
    assert inv.check_liveness("node-a", released, T + 9999, T, RULES) == []


# --- (c) acknowledged heartbeats ---------------------------------------------------------------


def test_lost_acknowledged_heartbeat_is_caught():
    acks = [inv.Ack("node-a", "case-1", 5, T, "hash5", 1)]
    ok = inv.NodeView("node-a", {"case-1": case(seq=5, hb_hashes={"hash5"})}, [])
    assert inv.check_acks("node-a", ok, acks) == (1, [])
    rolled_back = inv.NodeView("node-a", {"case-1": case(seq=4, hb_hashes={"hash5"})}, [])
    assert "stores seq 4" in inv.check_acks("node-a", rolled_back, acks)[1][0].text
    no_entry = inv.NodeView("node-a", {"case-1": case(seq=5, hb_hashes=set())}, [])
    assert "no heartbeat entry" in inv.check_acks("node-a", no_entry, acks)[1][0].text
    gone = inv.NodeView("node-a", {}, [])
    assert inv.check_acks("node-a", gone, acks)[1][0].invariant == "c"


# --- (d) envelopes -----------------------------------------------------------------------------


def test_changed_or_missing_envelope_is_caught():
    envs = [
        {"body": {"holder": "node0", "recipient": "r1", "sealed": "x"}},
        {"body": {"holder": "node0", "recipient": "r0", "sealed": "y"}},
    ]
    stored = sorted(envs, key=lambda e: e["body"]["recipient"])
    assert inv.check_envelopes("node-a", case(envelopes=stored), envs) == []
    assert inv.check_envelopes("node-a", case(envelopes=stored[:1]), envs)[0].invariant == "d"
    altered = [dict(e, body=dict(e["body"], sealed="z")) for e in stored]
    assert inv.check_envelopes("node-a", case(envelopes=altered), envs)[0].invariant == "d"


# --- (e) notifications -------------------------------------------------------------------------

TARGETS = {"case-1": {"reporter": [("email", "rep@x.example")]}}


def row(key: str, event: str = "released", deadline: int | None = T, **kw) -> inv.OutboxRow:
    base = dict(
        node="node-a", key=key, case_id="case-1", channel="email", target="rep@x.example",
        event=event, deadline=deadline, notice_node="fp-a", delivered=True, failed=False,
    )  # fmt: skip
    base.update(kw)
    return inv.OutboxRow(**base)


def notes(view_rows, audit_events, received, complete=()):
    cv = case(notify=collections.Counter({(e, "reporter"): n for e, n in audit_events.items()}))
    view = inv.NodeView("node-a", {"case-1": cv}, view_rows)
    n, bad = inv.check_notifications(
        [view], collections.Counter(received), {"case-1": RULES}, TARGETS, set(complete)
    )
    assert n > 0
    return bad


def test_notification_checks_pass_on_a_clean_record():
    rows = [row("k1"), row("k2", "overdue")]
    assert notes(rows, {"released": 1, "overdue": 1}, {"k1": 2, "k2": 1}, ["case-1"]) == []


def test_the_same_event_under_two_delivery_ids_is_caught():
    rows = [row("k1"), row("k2")]  # two 'released' notices from one node to one address
    bad = notes(rows, {"released": 2}, {"k1": 1, "k2": 1})
    assert any("2 distinct notices" in v.text for v in bad)
    # Reminders: one per offset per deadline is fine, a third is not.
    rem = [row(f"r{i}", "reminder") for i in range(3)]
    assert notes(rem[:2], {"reminder": 2}, {"r0": 1, "r1": 1}) == []
    assert any(
        "distinct" in v.text for v in notes(rem, {"reminder": 3}, {"r0": 1, "r1": 1, "r2": 1})
    )


def test_a_lost_notification_is_caught():
    # Marked delivered but never arrived:
    bad = notes([row("k1")], {"released": 1}, {})
    assert any("marked delivered but never arrived" in v.text for v in bad)
    # Still queued when the case is complete:
    bad = notes([row("k1", delivered=False)], {"released": 1}, {}, ["case-1"])
    assert any("never arrived" in v.text for v in bad)
    # In the audit log but never queued:
    bad = notes([], {"released": 1}, {})
    assert any("not in the outbox" in v.text for v in bad)
    # Given up:
    assert any(
        "gave up" in v.text for v in notes([row("k1", failed=True)], {"released": 1}, {"k1": 1})
    )


def test_a_delivery_no_node_queued_is_caught():
    bad = notes([row("k1")], {"released": 1}, {"k1": 1, "forged": 1})
    assert any("no node queued" in v.text for v in bad)


# --- (f) audit chain ---------------------------------------------------------------------------


def test_a_tampered_audit_chain_is_caught(tmp_path):
    from click.testing import CliRunner

    from cli.node_cmds import node as node_cli

    data = tmp_path / "node"
    res = CliRunner().invoke(
        node_cli, ["init", "--data", str(data), "--name", "n", "--url", "http://127.0.0.1:9"]
    )
    assert res.exit_code == 0, res.output
    store = Store(data / "node.db")
    with store.tx() as conn:
        for i in range(3):
            audit.append(conn, T + i, "case-1", "heartbeat", {"seq": i + 1})
    store.close()
    assert audit_check("n", data) == []
    conn = sqlite3.connect(data / "node.db")
    conn.execute("UPDATE audit SET detail = '{\"seq\": 9}' WHERE seq = 2")
    conn.commit()
    conn.close()
    bad = audit_check("n", data)
    assert [v.invariant for v in bad] == ["f"] and "broken at entry 2" in bad[0].text


def test_a_release_without_its_notices_is_caught():
    targets = {"reporter": [("email", "rep@x.example")], "recipients": [("email", "d@x.example")]}
    released = case(state="RELEASED", released_at=T + 4200, release_reason="deadline")
    full = [
        row("k1"),
        row("k2", target="d@x.example"),
        row("k3", "overdue"),
    ]
    view = inv.NodeView("node-a", {"case-1": released}, full)
    assert inv.released_notices_complete([view], "case-1", targets) == []
    for drop in range(3):
        partial = inv.NodeView("node-a", {"case-1": released}, full[:drop] + full[drop + 1 :])
        assert inv.released_notices_complete([partial], "case-1", targets)[0].invariant == "e"
