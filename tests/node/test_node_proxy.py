"""A node's outbound traffic through [network] proxy (docs/protocol.md §4.9; operator guide).

Gossip to peers, the pre-release sync and webhooks all go through a real SOCKS5 server
(microsocks); how that is proven is in tests/socks.py. Onion peers need the proxy.
"""

from __future__ import annotations

import pytest

from escrow_node.config import load_config
from escrow_node.errors import ConfigError
from tests.node.builders import T0
from tests.node.conftest import wait_for
from tests.socks import PROXIED_FROM, Relay, Socks, relayed_node
from vault.nodeproto.client import NodeClient

EVERY, GRACE = 3600, 600


@pytest.fixture
def socks():
    s = Socks()
    yield s
    s.close()


def test_gossip_sync_and_webhooks_go_through_the_proxy(tmp_path, clock, socks, world_for, webhooks):
    made = []
    hook_relay = Relay(int(webhooks.url.rsplit(":", 1)[1]))
    try:
        for name in ("node-a", "node-b"):
            n = relayed_node(tmp_path / "nodes", name, clock, network={"proxy": socks.url})
            made.append(n.start())
        a, b = made
        w = world_for(a.card, b.card, every=EVERY, grace=GRACE)
        cid = w.policy.case_id
        for n in made:
            with NodeClient(n.card, w.reporter, clock, url=n.url, proxy=None) as c:
                c.register_case(w.policy, w.envs_for(n.card))
        with NodeClient(a.card, w.reporter, clock, url=a.url, proxy=None) as c:
            c.subscribe(cid, "webhook", hook_relay.url() + "/r")
            # A heartbeat reaches node A only (directly, not through its relay)...
            from vault.nodeproto.messages import make_heartbeat

            c.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, T0 + 10))
        # ...and A gossips it to B through the proxy
        wait_for(lambda: b.query("SELECT seq FROM cases WHERE case_id=?", cid)[0][0] == 1)
        assert b.relay.seen() and set(b.relay.seen()) == {PROXIED_FROM}
        # The deadline passes: A's overdue notice goes to the webhook through the proxy
        clock.set(T0 + 10 + EVERY + 1)
        wait_for(lambda: webhooks.for_("/r", "overdue"), 20, "the webhook through the proxy")
        assert set(hook_relay.seen()) == {PROXIED_FROM}
        # Past grace: A's pre-release sync asks B through the proxy, then releases
        before = len(b.relay.seen())
        clock.set(T0 + 10 + EVERY + GRACE + 1)
        a.wait_state(cid, "RELEASED", 20)
        assert len(b.relay.seen()) > before
        assert set(b.relay.seen()) == {PROXIED_FROM}
        assert set(a.relay.seen()) <= {PROXIED_FROM}
    finally:
        for n in made:
            n.stop()
            n.relay.close()
        hook_relay.close()


def test_an_onion_peer_without_a_proxy_is_refused_at_start(tmp_path, clock):
    n = relayed_node(tmp_path / "nodes", "node-a", clock)
    n.configure(peers={"urls": {"ABCD": "http://abcdefghijklmnop.onion"}})
    with pytest.raises(ConfigError, match="onion address but \\[network\\] proxy is not set"):
        load_config(n.dir)
    n.configure(network={"proxy": "socks5h://127.0.0.1:9050"})
    assert load_config(n.dir).proxy == "socks5h://127.0.0.1:9050"
    n.relay.close()


def test_a_bad_proxy_in_node_toml_is_refused(tmp_path, clock):
    n = relayed_node(tmp_path / "nodes", "node-a", clock, network={"proxy": "http://x:1"})
    with pytest.raises(ConfigError, match="\\[network\\] proxy"):
        load_config(n.dir)
    n.relay.close()
