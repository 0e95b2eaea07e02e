"""The clock check before a release (docs/protocol.md §4.8, §7.1; issue 11, finding 6).

Regression: nothing compared a node's clock with anyone's. A node whose clock jumped ahead by
days released every case at once, early, while its peers (and the reporter) were on time.
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from escrow_node.clockcheck import TOLERANCE, holds, judge
from tests.node.conftest import RealNode, SharedClock, wait_for
from vault.encoding import b64e
from vault.errors import AuthenticationError
from vault.nodeproto.client import NodeClient

pytestmark = pytest.mark.integration

DAYS = 86400


def test_holds_only_while_the_release_is_not_due_by_the_peers_time():
    now = 10**9
    ahead = judge(now, [now - DAYS], 1)
    assert holds(ahead, now - 10, now)  # due by this clock only
    assert not holds(ahead, now - DAYS, now)  # due by the peer's clock too
    assert not holds(judge(now, [now], 1), now + 5, now)  # the clocks agree


def test_a_held_release_goes_ahead_after_one_interval_and_grace_of_elapsed_time(monkeypatch):
    # Regression (review of issue 11): peers' times are only their word, so a lying co-node
    # could hold a release for ever. The hold is bounded by this node's own elapsed time.
    from types import SimpleNamespace

    from escrow_node import clockcheck

    now = [1000.0]
    monkeypatch.setattr(clockcheck, "MONOTONIC", lambda: now[0])
    svc = SimpleNamespace(clock_holds={})
    longest = 3600 + 600
    assert not clockcheck.hold_expired(svc, "c", 500, longest)  # the hold begins
    now[0] += longest - 1
    assert not clockcheck.hold_expired(svc, "c", 500, longest)
    now[0] += 1
    assert clockcheck.hold_expired(svc, "c", 500, longest)  # due in real time by now
    # A newer check-in starts a new hold; forgetting it (release done) starts afresh too.
    assert not clockcheck.hold_expired(svc, "c", 900, longest)
    clockcheck.forget_hold(svc, "c")
    assert "c" not in svc.clock_holds


def test_judge_counts_a_strict_majority_of_the_peers_that_answered():
    now = 10**9
    far = now - TOLERANCE - 1
    assert judge(now, [], 4).ok  # nobody answered: never a reason to hold a release
    assert judge(now, [now, now - TOLERANCE], 2).ok  # within the tolerance
    assert not judge(now, [far], 1).ok
    assert not judge(now, [far, far, now], 3).ok
    assert judge(now, [far, now], 2).ok  # one of two is not a majority
    assert judge(now, [now + 5 * DAYS], 1).ok  # behind the peers: not this check's business
    v = judge(now, [far, far, now], 5)
    assert (v.asked, v.answered, v.behind, v.lead) == (5, 3, 2, TOLERANCE + 1)


def test_the_clock_endpoint_signs_the_askers_nonce(nodes):
    n = nodes("node-c")
    nonce = secrets.token_bytes(32)
    with NodeClient(n.card, None, n.clock, 10.0) as client:
        body = client.signed_time(nonce)
    assert body["time"] == n.clock.now() and body["node"] == n.card.fingerprint
    # An attacker on the path replays that real signed answer to a later question: refused,
    # so an old time cannot make a peer look behind and hold a release.
    old = httpx.get(f"{n.url}/v1/clock", params={"nonce": b64e(nonce)}).content
    replay = httpx.Client(
        transport=httpx.MockTransport(lambda req: httpx.Response(200, content=old))
    )
    with (
        NodeClient(n.card, None, n.clock, 10.0, http=replay) as client,
        pytest.raises(AuthenticationError),
    ):
        client.signed_time(secrets.token_bytes(32))
    replay.close()
    # A malformed nonce is a 400.
    assert httpx.get(f"{n.url}/v1/clock", params={"nonce": "short"}).status_code == 400


@pytest.fixture
def pair(tmp_path, nodes, clock, world_for, webhooks):
    """Node A with its own clock (and its operator's webhook), node B on the shared one; one
    case held by both."""
    clock_a = SharedClock(tmp_path / "clock-a")
    a = RealNode(
        tmp_path / "nodes",
        "node-a",
        clock_a,
        notify={"operator_webhook": f"{webhooks.url}/operator"},
    )
    a.start()
    b = nodes("node-b")
    w = world_for(a.card, b.card, every=3600, grace=600, remind=())
    a.client(w.reporter).register_case(w.policy, w.envs_for(a.card))
    b.client(w.reporter).register_case(w.policy, w.envs_for(b.card))
    yield a, b, clock_a, w.policy.case_id
    a.stop()


def test_a_node_whose_clock_jumps_ahead_does_not_release(pair, clock, webhooks):
    a, b, clock_a, cid = pair
    # Given node A's clock jumps three days ahead while B's stays right
    clock_a.advance(3 * DAYS)
    # Then A refuses the release it thinks is due, with an alarm in its log and audit
    alarms = "SELECT detail FROM audit WHERE case_id = ? AND event = 'clock_alarm'"
    wait_for(lambda: a.query(alarms, cid), what="the clock alarm")
    wait_for(lambda: "CLOCK ALARM" in a.log_text(), what="the alarm in the log")
    assert a.state(cid) == "OVERDUE"
    assert b.state(cid) == "ARMED"
    # And it stays refused, sweep after sweep (one audit entry, not one per sweep)
    wait_for(lambda: a.log_text().count("CLOCK ALARM") >= 3, what="more sweeps")
    assert a.state(cid) == "OVERDUE"
    assert len(a.query(alarms, cid)) == 1
    # And the operator was told, once
    wait_for(lambda: webhooks.for_("/operator", "clock_alarm"), what="the operator's notice")
    assert len(webhooks.for_("/operator", "clock_alarm")) == 1
    # When the peers agree with A's time (B's clock is there too), A releases
    clock.set(clock_a.now())
    a.wait_state(cid, "RELEASED")


def test_with_no_peer_reachable_the_release_goes_ahead(pair):
    a, b, clock_a, cid = pair
    # Taking the peers down must not prevent a release (the documented tradeoff)
    b.kill()
    clock_a.advance(3 * DAYS)
    a.wait_state(cid, "RELEASED")
    assert not a.query("SELECT 1 FROM audit WHERE event = 'clock_alarm'")


def test_a_node_ahead_still_releases_when_the_peers_time_says_it_is_due(pair, clock):
    a, b, clock_a, cid = pair
    # Given A's clock is three days ahead and stays so: its release is held
    clock_a.advance(3 * DAYS)
    wait_for(lambda: "CLOCK ALARM" in a.log_text(), what="the alarm")
    assert a.state(cid) == "OVERDUE"
    # When real time (the peers' clocks) reaches the case's deadline + grace
    clock.advance(3600 + 600)
    clock_a.advance(3600 + 600)
    # Then A releases too: a wrong clock delays nothing (and released nothing early)
    a.wait_state(cid, "RELEASED")
    b.wait_state(cid, "RELEASED")
    assert "due by the peers' time too" in a.log_text()
