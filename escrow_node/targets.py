"""Where the node may send webhooks (docs/security.md "Hostile registrants and SSRF").

A webhook URL is chosen by a party of a case, not by the operator. Unchecked, it would make the
node POST to its own loopback services, to the cloud metadata address (169.254.169.254), or into
the operator's intranet: a server-side request forgery (SSRF). So a party's webhook must resolve
only to public unicast addresses, checked twice:

- when it is registered (POST /v1/cases/{id}/subscribe), so the party hears at once; and
- again right before each delivery (outbox.py), because DNS answers change (a name that was
  public at registration may point at 127.0.0.1 later).

Every address a name resolves to must pass, since the HTTP client may connect to any of them.
Names are resolved with the system resolver, which also understands the odd spellings of an IP
address ("2130706433", "0x7f.1"), so they cannot slip past as "names". The operator may allow
special addresses ([registration] allow_private_targets, or allowed_networks for a few CIDRs),
and the webhooks the operator configured in node.toml ([notify], [contacts]) are trusted as they
are. Onion addresses are not IP addresses; they are reached through the proxy, if at all.

A residual gap, documented in docs/threat-model.md: the HTTP client resolves the name again when
it connects, so a name whose DNS answer changes within that moment (DNS rebinding) could still
reach a private address once. Redirects are never followed (outbox.py), so a public target
cannot bounce the node elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from vault.cards import Card

from .config import NodeConfig, RegistrationConfig
from .errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]

NAT64 = ipaddress.ip_network("64:ff9b::/96")
"""The well-known NAT64 prefix: its last 32 bits are an IPv4 address a gateway connects to."""


class TargetRefused(BadRequest):
    """A webhook target that resolves to an address this node does not send to.

    The message never names the URL or the address: webhook URLs often carry secret tokens, and
    the message reaches logs and the outbox's last_error column."""

    code = "target_refused"


def _embedded_v4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def is_public(addr: IPAddress) -> bool:
    """True for a global unicast address: not loopback, link-local, private (RFC 1918, ULA),
    shared (100.64/10), documentation, multicast, unspecified, reserved or broadcast."""
    inner = _embedded_v4(addr)
    if inner is not None and not is_public(inner):
        return False
    return addr.is_global and not addr.is_multicast


def allowed(addr: IPAddress, reg: RegistrationConfig) -> bool:
    """Public, or special but inside a network the operator allowed."""
    if reg.allow_private_targets or is_public(addr):
        return True
    return any(addr in ipaddress.ip_network(net) for net in reg.allowed_networks)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


def operator_targets(config: NodeConfig) -> frozenset[str]:
    """The webhooks the operator wrote into node.toml: trusted, never checked."""
    urls = {config.operator_webhook} | {c.webhook for c in config.contacts.values()}
    return frozenset(u for u in urls if u)


def _local_or_numeric(host: str) -> bool:
    """A host a proxy would take to a local or numeric address whatever DNS says: `localhost`
    and its subdomains (with or without the final dot), and the legacy numeric spellings
    `inet_aton` accepts (`127.1`, `2130706433`, `0x7f.1`). Such hosts are checked here even
    behind a proxy, as addresses (numeric ones through inet_aton)."""
    import socket

    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        socket.inet_aton(name)
    except OSError:
        return False
    return True


def check_webhook(
    url: str,
    reg: RegistrationConfig,
    trusted: frozenset[str] = frozenset(),
    resolve: Resolver = system_resolver,
    what: str = "the webhook target",
    proxied: bool = False,
) -> None:
    """Raise TargetRefused unless the node may POST to `url` (see the module docstring).
    `what` names the URL in messages (never the URL itself).

    `proxied`: the node reaches it through its SOCKS proxy ([network] proxy, socks5h), which
    resolves the name itself. A local lookup would then leak the name to this machine's DNS,
    so only literal addresses (and `localhost`) are checked; the proxy decides where a name
    goes (Tor exits refuse private addresses)."""
    if url in trusted or reg.allow_private_targets:
        return
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused(f"{what} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise TargetRefused(f"{what} must be an http(s) URL with a host name")
    if host.endswith(".onion"):
        return
    if proxied and not _local_or_numeric(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return  # a name: resolved by the proxy, never here
    try:
        found = list(resolve(host, port))
    except (OSError, UnicodeError):
        raise TargetRefused(
            f"the host name of {what} does not resolve",
            hint="check the address, or try again when its DNS works",
        ) from None
    if not found:
        raise TargetRefused(f"the host name of {what} does not resolve")
    for text in found:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise TargetRefused(f"{what} resolves to an unreadable address") from None
        if not allowed(addr, reg):
            raise TargetRefused(
                f"{what} is a loopback, private or other non-public address, "
                "which this node does not send to",
                hint="use a public address, or ask the node's operator to allow that network "
                "([registration] allowed_networks in node.toml)",
            )


def check_delivery(config: NodeConfig, url: str) -> None:
    """The delivery-time check (outbox.py): the same rules, with the node's own settings."""
    check_webhook(
        url, config.registration, operator_targets(config), proxied=config.proxy is not None
    )


def check_peers(config: NodeConfig, own_pk: bytes, cards: Iterable[Card]) -> None:
    """The same rules for the other node cards a NEW case names (docs/protocol.md §4.1.1): the
    node gossips heartbeats to them and asks them before a release, so a hostile policy could
    otherwise aim those requests inside the operator's network. A peer URL the operator set in
    [peers] urls is trusted."""
    for card in cards:
        if card.sign_pk == own_pk or card.fingerprint in config.peer_urls:
            continue
        check_webhook(
            card.url or "",
            config.registration,
            what=f"the URL of node {card.name}",
            proxied=config.proxy is not None,
        )
