"""The address classification behind the webhook check (escrow_node/targets.py; docs/protocol.md
§8.1). The resolver is a parameter so that a name's answers can be given exactly: what matters
here is that EVERY address a name resolves to is judged."""

from __future__ import annotations

import ipaddress

import pytest

from escrow_node.config import RegistrationConfig
from escrow_node.targets import TargetRefused, check_webhook, is_public

STRICT = RegistrationConfig()


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "192.0.2.10",
        "198.18.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
    ],
)
def test_special_addresses_are_not_public(addr):
    assert not is_public(ipaddress.ip_address(addr))


@pytest.mark.parametrize("addr", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_public(addr):
    assert is_public(ipaddress.ip_address(addr))


def fixed(*answers: str):
    def resolve(host: str, port: int) -> list[str]:
        return list(answers)

    return resolve


def test_a_name_is_refused_if_any_of_its_addresses_is_private():
    with pytest.raises(TargetRefused):
        check_webhook("https://hooks.example/x", STRICT, resolve=fixed("8.8.8.8", "10.0.0.1"))
    check_webhook("https://hooks.example/x", STRICT, resolve=fixed("8.8.8.8", "1.1.1.1"))


def test_the_operator_may_allow_networks_or_everything():
    some = RegistrationConfig(allowed_networks=("10.20.0.0/16",))
    check_webhook("http://relay.internal/x", some, resolve=fixed("10.20.3.4"))
    with pytest.raises(TargetRefused):
        check_webhook("http://relay.internal/x", some, resolve=fixed("10.21.0.1"))
    check_webhook("http://127.0.0.1:9/x", RegistrationConfig(allow_private_targets=True))


def test_operator_targets_are_trusted_and_onions_are_not_resolved():
    def never(host: str, port: int) -> list[str]:
        raise AssertionError("resolved")

    url = "http://127.0.0.1:9000/pager"
    check_webhook(url, STRICT, trusted=frozenset({url}), resolve=never)
    check_webhook("http://abcdefghijklmnop.onion/hook", STRICT, resolve=never)


def test_behind_a_proxy_names_are_not_resolved_here_but_literal_addresses_are_checked():
    # A node with [network] proxy = socks5h://... lets the proxy resolve names: a local lookup
    # would leak the name to this machine's DNS. Literal private addresses are still refused.
    def never(host: str, port: int) -> list[str]:
        raise AssertionError("resolved locally")

    check_webhook("https://hooks.example/x", STRICT, resolve=never, proxied=True)
    for url in (
        "http://127.0.0.1:9/x",
        "http://10.0.0.1/x",
        "http://[::1]/x",
        # numeric spellings and localhost forms the proxy would also take to this machine
        "http://127.1:9464/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://localhost./",
        "http://foo.localhost/",
    ):
        with pytest.raises(TargetRefused):
            check_webhook(url, STRICT, resolve=fixed("127.0.0.1"), proxied=True)
    with pytest.raises(TargetRefused):
        check_webhook("http://localhost/x", STRICT, resolve=fixed("127.0.0.1"), proxied=True)


def test_unresolvable_and_malformed_targets_are_refused_without_echoing_them():
    def fails(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    for url, resolve in (
        ("https://secret-token.invalid/x", fails),
        ("https://hooks.example:99999/x", fixed("8.8.8.8")),
        ("gopher://hooks.example/x", fixed("8.8.8.8")),
    ):
        with pytest.raises(TargetRefused) as info:
            check_webhook(url, STRICT, resolve=resolve)
        assert "hooks.example" not in info.value.message
        assert "secret-token" not in info.value.message
