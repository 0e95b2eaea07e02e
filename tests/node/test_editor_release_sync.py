"""Editor-pending releases go through the pre-release sync and send the release notices
(docs/protocol.md §4.3, §5.2; issue 11, finding 5), with real `velador node serve` processes.

Regression: a node in EDITOR_PENDING released at min(pending_until, deadline + grace) on its
own, without asking its peers: a reporter who checked in at another node was released by the
deadline anyway.
"""

from __future__ import annotations

import pytest

from tests.node.conftest import wait_for
from tests.node.test_integration import delivered, hook_events
from vault.nodeproto.messages import make_heartbeat

pytestmark = pytest.mark.integration


def test_pending_case_past_its_deadline_asks_peers_before_releasing(nodes, world_for, clock):
    a = nodes("node-a")
    b = nodes("node-b")
    w = world_for(a.card, b.card, every=3600, grace=600, remind=(), objection_window=86400)
    cid = w.policy.case_id
    a.client(w.reporter).register_case(w.policy, w.envs_for(a.card))
    b.client(w.reporter).register_case(w.policy, w.envs_for(b.card))
    # Given editors reached the quorum at node A only, with a long objection window: A's
    # deadline + grace (T0 + 4,200) comes before the window's end.
    for e in w.editors:
        a.client(e).release_request(cid)
    assert a.state(cid) == "EDITOR_PENDING"
    # And the reporter checks in at node B while A is down (B's forward to A cannot arrive).
    a.kill()
    clock.advance(3000)
    b.client(w.reporter).heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, clock.now()))
    # When A comes back after its own deadline + grace
    clock.advance(1300)
    a.start()
    # Then it asked B first, found the newer heartbeat, and did not release
    wait_for(lambda: a.query("SELECT seq FROM cases")[0][0] == 1, what="A to learn heartbeat 1")
    assert a.state(cid) == "EDITOR_PENDING"
    row = a.query("SELECT prior, deadline FROM cases")[0]
    assert (row["prior"], row["deadline"]) == ("ARMED", clock.now() - 1300 + 3600)
    synced = a.query(
        "SELECT detail FROM audit WHERE case_id = ? AND event = 'heartbeat'"
        " AND detail LIKE '%pre-release-sync%'",
        cid,
    )
    assert len(synced) == 1
    # And it warned the reporter and editors it was overdue, as a deadline would have
    notices = [
        r["event"]
        for r in a.query(
            "SELECT json_extract(notice, '$.body.event') AS event FROM notices WHERE case_id = ?",
            cid,
        )
    ]
    assert "overdue" in notices
    assert "released" not in notices


def test_an_editor_release_is_synced_and_tells_the_recipients(nodes, world_for, clock, webhooks):
    n = nodes("node-e")
    w = world_for(n.card, every=86400, grace=3600, objection_window=600)
    cid = w.policy.case_id
    n.client(w.reporter).register_case(w.policy, w.envs_for(n.card))
    for i, r in enumerate(w.recipients):
        n.client(r).subscribe(cid, "webhook", f"{webhooks.url}/recipient{i}")
    for e in w.editors:
        n.client(e).release_request(cid)
    # When the objection window closes
    clock.advance(600)
    n.wait_state(cid, "RELEASED")
    # Then the release went through the pre-release sync, like a deadline release
    rows = n.query(
        "SELECT json_extract(detail, '$.synced') AS synced, json_extract(detail, '$.to') AS dest"
        " FROM audit WHERE case_id = ? AND event = 'advance'",
        cid,
    )
    assert [r["synced"] for r in rows if r["dest"] == "RELEASED"] == [1]
    # And every recipient got the released notice
    wait_for(lambda: delivered(n), what="outbox drained")
    for i in range(len(w.recipients)):
        assert hook_events(webhooks, f"/recipient{i}").get("released") == 1
    reason = n.query("SELECT release_reason FROM cases")[0][0]
    assert reason == "editors"


# --- the request rules over the API (docs/protocol.md §4.5), on an in-thread node -----------


@pytest.fixture
def icase(inproc, world_for):
    w = world_for(inproc.card, every=3600, grace=600, objection_window=300)
    inproc.client(w.reporter).register_case(w.policy, w.envs_for(inproc.card))
    return w


def test_requests_while_paused_wait_for_the_pause_to_end(inproc, icase):
    cid = icase.policy.case_id
    reporter = inproc.client(icase.reporter)
    until = inproc.clock.now() + 7 * 86400
    reporter.pause(cid, until)
    e0, e1 = (inproc.client(e) for e in icase.editors)
    e0.release_request(cid)
    r = e1.release_request(cid)
    # The quorum is recorded and the reporter told, but the window ends after the pause.
    assert r["state"] == "EDITOR_PENDING"
    assert reporter.status(cid)["pending_until"] == until + 300
    assert "editor_pending" in [n["notice"]["event"] for n in reporter.inbox()]
    inproc.clock.set(until - 1)
    inproc.sweep()
    assert reporter.status(cid)["state"] == "EDITOR_PENDING"
    # The reporter, alive, objects during the pause: back to the pause.
    assert reporter.object(cid)["state"] == "PAUSED"


def test_an_objection_before_the_quorum_makes_the_next_quorum_fresh(inproc, icase):
    cid = icase.policy.case_id
    reporter = inproc.client(icase.reporter)
    e0, e1 = (inproc.client(e) for e in icase.editors)
    e0.release_request(cid)
    # The reporter objects (this node had only one request): accepted, the request is cleared.
    assert reporter.object(cid)["state"] == "ARMED"
    assert reporter.status(cid)["editor_requests"] == 0
    assert e1.release_request(cid)["state"] == "ARMED"  # one fresh request is not a quorum


def test_a_request_lapses_after_every_plus_grace(inproc, icase):
    cid = icase.policy.case_id
    reporter = inproc.client(icase.reporter)
    e0, e1 = (inproc.client(e) for e in icase.editors)
    e0.release_request(cid)
    reporter.pause(cid, inproc.clock.now() + 86400)  # so the deadline does not release first
    inproc.clock.advance(3600 + 600)
    inproc.sweep()
    assert reporter.status(cid)["editor_requests"] == 0
    assert e1.release_request(cid)["state"] == "PAUSED"
