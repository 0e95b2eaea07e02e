"""Network privacy (docs/protocol.md §4.9; issue 11, "Network privacy (Tor)"): with a proxy set,
every connection the reporter's and the outlet's commands make to escrow nodes goes through a
real SOCKS5 server (microsocks, standing in for Tor), names reach the proxy unresolved, and a
dead proxy means failure, never a direct connection.

How "through the proxy" is proven: see tests/socks.py (microsocks connects from 127.0.0.2, a
direct connection comes from 127.0.0.1, and a relay in front of each node records the source).
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import OPW, create_args
from tests.socks import PROXIED_FROM, Socks, relayed_node


@pytest.fixture
def socks():
    s = Socks()
    yield s
    s.close()


@pytest.fixture
def relayed(tmp_path, clock, socks):
    """Nodes behind relays; their own traffic (gossip to each other) uses the proxy too."""
    made = []

    def make(name: str):
        net = {"network": {"proxy": socks.url}}
        node = relayed_node(tmp_path / "nodes", name, clock, **net).start()
        made.append(node)
        return node

    yield made, make
    for n in made:
        n.stop()
        n.relay.close()


@pytest.fixture
def lookups(monkeypatch):
    """Host names this process resolved (the CLI runs in process)."""
    seen: list[str] = []
    real = socket.getaddrinfo

    def spy(host, *args, **kwargs):
        seen.append(host.decode() if isinstance(host, bytes) else str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    return seen


def sources(nodes) -> list[str]:
    return [s for n in nodes for s in n.relay.seen()]


def test_every_node_connection_goes_through_the_proxy(
    v, people, relayed, socks, lookups, tmp_path, monkeypatch
):
    made, make = relayed
    for i, name in enumerate(("node-a", "node-b")):
        node = make(name)
        card = v.ok(people.r, "node", "card", "--data", node.dir, passphrase=None).strip()
        v.ok(people.r, "contact", "add", card, "--alias", f"n{i + 1}")
        v.ok(people.outlets[0], "contact", "add", card, "--alias", f"n{i + 1}", passphrase=OPW)

    def through_proxy(step: str) -> None:
        seen = sources(made)
        assert len(seen) > through_proxy.count, f"{step}: no connection reached the nodes"
        assert set(seen) == {PROXIED_FROM}, f"{step}: a connection did not use the proxy"
        through_proxy.count = len(seen)

    through_proxy.count = 0

    # --proxy on the command line: case create (registration at every node), checkin
    info = v.json(people.r, "--proxy", socks.url, *create_args(2, tmp_path))
    assert info["armed"] is True
    through_proxy("case create --proxy")
    v.ok(people.r, "--proxy", socks.url, "checkin", "inv")
    through_proxy("checkin --proxy")
    # VELADOR_PROXY
    monkeypatch.setenv("VELADOR_PROXY", socks.url)
    v.ok(people.r, "status", "inv")
    through_proxy("status with VELADOR_PROXY")
    v.ok(people.outlets[0], "inbox", passphrase=OPW)
    through_proxy("the outlet's inbox with VELADOR_PROXY")
    monkeypatch.delenv("VELADOR_PROXY")
    # HOME/config.toml
    (people.r / "config.toml").write_text(f'[network]\nproxy = "{socks.url}"\n')
    v.ok(people.r, "checkin", "inv")
    through_proxy("checkin with [network] proxy in config.toml")
    # socks5h: the node's host name (localhost) was handed to the proxy, never resolved here
    assert "localhost" not in lookups

    # A dead proxy: the command fails, and nothing connects to the nodes directly
    dead = f"socks5h://127.0.0.1:{free_port()}"
    # (A dead proxy lets nothing through, so any new connection would come from 127.0.0.1: the
    # set of sources is the check. Counting is not: a connection of an earlier step, opened as
    # its command exited, may be relayed a moment later, through the proxy.)
    code, _out, err = v(people.r, "--proxy", dead, "checkin", "inv")
    assert code != 0 and "queued" in err
    assert set(sources(made)) == {PROXIED_FROM}
    v(people.outlets[0], "--proxy", dead, "inbox", passphrase=OPW)
    assert set(sources(made)) == {PROXIED_FROM}

    # Sanity of the method: without a proxy, the relays do see direct connections
    (people.r / "config.toml").unlink()
    v.ok(people.r, "checkin", "inv")
    assert "127.0.0.1" in sources(made)


def test_a_bad_proxy_setting_is_one_clear_error(v, people):
    first, hint = v.fails(people.r, "--proxy", "http://127.0.0.1:8080", "status", code=v_code())
    assert first.startswith("velador: error: invalid proxy")
    assert "socks5h://127.0.0.1:9050" in hint


def v_code() -> int:
    from vault.errors import FormatError

    return FormatError("x").exit_code


def test_s3_stores_are_refused_under_a_proxy(socks, monkeypatch):
    from vault.errors import StoreError
    from vault.nodeproto import transport
    from vault.stores import open_store

    transport.set_default_proxy(socks.url)
    try:
        with pytest.raises(StoreError, match="cannot be reached through the SOCKS proxy") as e:
            open_store("s3://bucket/prefix")
        assert "VELADOR_S3_DIRECT=1" in (e.value.hint or "")
        monkeypatch.setenv("VELADOR_S3_DIRECT", "1")
        assert open_store("s3://bucket/prefix") is not None
    finally:
        transport.set_default_proxy(None)
