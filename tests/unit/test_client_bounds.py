"""Client limits (docs/protocol.md §4.9): every request ends within its wall-clock deadline and
refuses an answer over the size cap, however a hostile node drips, stalls or floods.

Regression (issue 11, finding 1): httpx timeouts bound each read, not the whole answer, so a
node sending one byte a second kept `NodeClient`, `fan_out` (recover, status, case create) and
the node's own pre-release sync waiting forever. The bounds here are generous wall-clock limits
that prove "does not hang"; before the fix each of these tests ran into them.
"""

from __future__ import annotations

import time

import pytest

from tests.hostile import HostileServer, finishes_within
from tests.node.builders import T0, person
from vault.clock import FakeClock
from vault.errors import NodeError
from vault.nodeproto import transport
from vault.nodeproto.client import NodeClient
from vault.switch import fan_out


@pytest.fixture
def card_for(tmp_path):
    made = iter(range(100))

    def make(url: str):
        return person(tmp_path / f"node{next(made)}", "hostile", "node", url).card

    return make


@pytest.mark.parametrize("mode", ["drip", "stall"])
def test_a_dripping_or_stalling_node_is_cut_at_the_deadline(card_for, mode):
    with HostileServer(mode) as evil:
        client = NodeClient(card_for(evil.url), None, FakeClock(T0), timeout=2.0)
        t0 = time.monotonic()

        def call():
            with pytest.raises(NodeError, match="did not answer completely within 2 s"):
                client.health()

        finishes_within(20, call)
        # Cut at the deadline (2 s), not one read timeout after it, nor never.
        assert time.monotonic() - t0 < 6
        client.close()


def test_a_huge_answer_is_refused_while_streaming(card_for):
    with HostileServer("flood", size=50 * 1024 * 1024) as evil:
        client = NodeClient(
            card_for(evil.url), None, FakeClock(T0), timeout=15.0, max_answer=1024 * 1024
        )

        def call():
            with pytest.raises(NodeError, match="oversized answer"):
                client.health()

        finishes_within(20, call)
        client.close()
        # The client stopped reading soon after the cap: the server could not push 50 MB.
        assert evil.sent < 20 * 1024 * 1024


def test_the_default_cap_is_enforced_on_a_50_mb_answer(card_for):
    with HostileServer("flood", size=50 * 1024 * 1024) as evil:
        client = NodeClient(card_for(evil.url), None, FakeClock(T0), timeout=15.0)

        def call():
            with pytest.raises(NodeError, match="oversized answer"):
                client.health()

        finishes_within(20, call)
        client.close()
        assert evil.sent < 50 * 1024 * 1024


def test_fan_out_returns_within_its_deadline(card_for):
    """`velador recover`, `status` and `case create` fan out to nodes: a dripping one among
    them is reported as unreachable within the bound, and the others still answer."""
    with HostileServer("drip") as drip, HostileServer("stall") as stall:
        cards = [card_for(drip.url), card_for(stall.url)]

        def two_requests(client: NodeClient):
            client.health()  # a task of two requests, like the custody challenge
            return client.health()

        t0 = time.monotonic()
        results = finishes_within(
            20, lambda: fan_out(cards, None, FakeClock(T0), two_requests, timeout=1.5)
        )
        assert time.monotonic() - t0 < 2 * 1.5 + 4
        assert all(isinstance(r.error, NodeError) for r in results)


def test_a_deadline_scope_bounds_several_requests(card_for):
    with HostileServer("drip") as evil:
        client = NodeClient(card_for(evil.url), None, FakeClock(T0), timeout=10.0)
        t0 = time.monotonic()

        def call():
            with transport.deadline(1.5), pytest.raises(NodeError):
                client.health()

        finishes_within(20, call)
        assert time.monotonic() - t0 < 6
        client.close()


def test_an_onion_address_is_refused_without_a_proxy(card_for):
    client = NodeClient(card_for("http://abcdefghijklmnop.onion"), None, FakeClock(T0), proxy=None)
    with pytest.raises(NodeError, match="onion address and no Tor proxy") as e:
        client.health()
    assert "--proxy" in (e.value.hint or "")
    client.close()


def test_a_node_card_url_that_cannot_be_connected_to_is_a_node_error(card_for):
    # Regression (review of issue 11): a host name that is not valid IDNA made httpx raise
    # UnicodeError out of the client, past the pre-release sync's `except VeladorError`, so a
    # hostile card in a case's policy failed that case's release at every sweep.
    client = NodeClient(card_for("http://xn--a.com"), None, FakeClock(T0), 2.0)
    with pytest.raises(NodeError):
        client.health()
    client.close()


@pytest.mark.parametrize(
    "text, ok",
    [
        ("socks5h://127.0.0.1:9050", "socks5h://127.0.0.1:9050"),
        ("socks5://127.0.0.1:9050", "socks5h://127.0.0.1:9050"),
        ("socks5h://case1:x@127.0.0.1:9050", "socks5h://case1:x@127.0.0.1:9050"),
        ("", None),
        ("http://127.0.0.1:8080", ValueError),
        ("socks5h://127.0.0.1", ValueError),
    ],
)
def test_proxy_urls_are_checked(text, ok):
    if ok is ValueError:
        with pytest.raises(ValueError):
            transport.check_proxy(text)
    else:
        assert transport.check_proxy(text) == ok


def test_safe_url_keeps_scheme_and_host_only():
    assert transport.safe_url("https://hooks.example.org:8443/t/SECRET?k=v") == (
        "https://hooks.example.org:8443"
    )
