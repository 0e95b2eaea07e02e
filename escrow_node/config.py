"""Node configuration: the TOML file `DIR/node.toml` (docs/guide-operator.md §3).

Everything the node needs at start-up is read once into frozen dataclasses; nothing re-reads the
file while serving. Unknown sections or keys are refused so a typo does not silently disable
notifications.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "node.toml"
DB_FILE = "node.db"
PASSPHRASE_FILE = "node.passphrase"  # noqa: S105 - a file name
PASSPHRASE_ENV = "VELADOR_NODE_PASSPHRASE"  # noqa: S105 - a variable name
CREDENTIAL_NAME = "velador-node-passphrase"
"""systemd credential (LoadCredential=, LoadCredentialEncrypted=) holding the passphrase."""

SMTP_SECURITY = ("plain", "starttls", "ssl")
REGISTRATION_MODES = ("closed", "open")
DEFAULT_INVITE_TTL = 7 * 86400


@dataclass(frozen=True)
class SmtpConfig:
    host: str = ""
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password_file: str = ""
    sender: str = "velador-node@localhost"
    timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class Contact:
    """Operator-maintained address for a party, keyed by card fingerprint."""

    email: str = ""
    webhook: str = ""


@dataclass(frozen=True)
class RegistrationConfig:
    """Who may register new cases, and where the node may send webhooks ([registration];
    docs/protocol.md §4.1.1, docs/security.md "Hostile registrants")."""

    mode: str = "closed"
    """closed: only admitted reporters or holders of an invitation code; open: any key."""
    allow_private_targets: bool = False
    """Let webhooks reach loopback, private and other special addresses (tests, intranets)."""
    allowed_networks: tuple[str, ...] = ()
    """CIDRs webhooks may reach even though they are special (e.g. an intranet relay)."""
    invite_ttl: int = DEFAULT_INVITE_TTL
    """Default lifetime of an invitation code in seconds (`velador node invite --ttl`)."""

    @property
    def open(self) -> bool:
        return self.mode == "open"


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path
    name: str
    url: str
    host: str = "127.0.0.1"
    port: int = 8700
    tick: float = 30.0
    """Period of the safety-net sweep in seconds (exact-time jobs do the real work)."""
    passphrase_file: str = PASSPHRASE_FILE
    max_body: int = 64 * 1024
    max_register_body: int = 4 * 1024 * 1024
    rate_per_key: float = 20.0
    rate_burst: int = 100
    peer_rate_per_key: float = 500.0
    timestamp_tolerance: int = 300
    metrics: bool = False
    """[metrics] enabled: off by default (docs/guide-operator.md §8)."""
    metrics_listen: str = "127.0.0.1:9464"
    """[metrics] listen: loopback HOST:PORT of the metrics listener, never the API port."""
    dashboard: bool = False
    """[dashboard] enabled: the operator's read-only page (escrow_node/dashboard.py); off by
    default."""
    dashboard_listen: str = "127.0.0.1:9465"
    """[dashboard] listen: loopback HOST:PORT, never the API port (like the metrics)."""
    peer_timeout: float = 5.0
    peer_urls: dict[str, str] = field(default_factory=dict)
    """Override of peer node URLs by node fingerprint (e.g. an internal or onion address)."""
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    operator_email: str = ""
    operator_webhook: str = ""
    contacts: dict[str, Contact] = field(default_factory=dict)
    webhook_timeout: float = 10.0
    verify_processes: int = 1
    """Heartbeat check worker processes ([workers] verify; 0 checks in the serving process)."""
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    proxy: str | None = None
    """[network] proxy: SOCKS5 URL (Tor) for every outbound peer and webhook connection."""

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    def with_overrides(self, **kw: Any) -> NodeConfig:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


_SECTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "node": {"name": str, "url": str},
    "listen": {"host": str, "port": int},
    "engine": {"tick": (int, float)},
    "identity": {"passphrase_file": str},
    "limits": {
        "max_body": int,
        "max_register_body": int,
        "rate_per_key": (int, float),
        "rate_burst": int,
        "peer_rate_per_key": (int, float),
        "timestamp_tolerance": int,
    },
    "smtp": {
        "host": str,
        "port": int,
        "security": str,
        "username": str,
        "password_file": str,
        "from": str,
        "timeout": (int, float),
    },
    "notify": {"operator_email": str, "operator_webhook": str, "webhook_timeout": (int, float)},
    "peers": {"timeout": (int, float), "urls": dict},
    "metrics": {"enabled": bool, "listen": str},
    "dashboard": {"enabled": bool, "listen": str},
    "contacts": {},
    "workers": {"verify": int},
    "registration": {
        "mode": str,
        "allow_private_targets": bool,
        "allowed_networks": list,
        "invite_ttl": int,
    },
    "network": {"proxy": str},
}
MAX_VERIFY_PROCESSES = 16


def _check(doc: dict[str, Any]) -> None:
    for section, values in doc.items():
        if section not in _SECTIONS:
            raise ConfigError(f"node.toml: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"node.toml: [{section}] must be a table")
        if section == "contacts":
            continue
        for key, value in values.items():
            kind = _SECTIONS[section].get(key)
            if kind is None:
                raise ConfigError(f"node.toml: unknown key {key!r} in [{section}]")
            if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
                raise ConfigError(f"node.toml: [{section}] {key} has the wrong type")


def load_config(data_dir: Path) -> NodeConfig:
    path = data_dir / CONFIG_FILE
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no node configuration in {data_dir}",
            hint="create one with 'velador node init --data DIR --name NAME --url URL'",
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc})") from exc
    _check(doc)
    node = doc.get("node", {})
    if "name" not in node or "url" not in node:
        raise ConfigError("node.toml: [node] needs name and url")
    sm = doc.get("smtp", {})
    smtp = SmtpConfig(
        host=sm.get("host", ""),
        port=sm.get("port", 587),
        security=sm.get("security", "starttls"),
        username=sm.get("username", ""),
        password_file=sm.get("password_file", ""),
        sender=sm.get("from", "velador-node@localhost"),
        timeout=float(sm.get("timeout", 10.0)),
    )
    if smtp.security not in SMTP_SECURITY:
        raise ConfigError(f"node.toml: [smtp] security must be one of {', '.join(SMTP_SECURITY)}")
    contacts = {}
    for fp, c in doc.get("contacts", {}).items():
        if not isinstance(c, dict) or set(c) - {"email", "webhook"}:
            raise ConfigError(f"node.toml: [contacts.{fp!r}] may only hold email and webhook")
        contacts[fp] = Contact(email=str(c.get("email", "")), webhook=str(c.get("webhook", "")))
    lim = doc.get("limits", {})
    verify = doc.get("workers", {}).get("verify", 1)
    if not 0 <= verify <= MAX_VERIFY_PROCESSES:
        raise ConfigError(
            f"node.toml: [workers] verify must be between 0 and {MAX_VERIFY_PROCESSES}"
        )
    peers = doc.get("peers", {})
    notify = doc.get("notify", {})
    registration = _registration(doc.get("registration", {}))
    proxy = _network_proxy(doc.get("network", {}), peers.get("urls", {}))
    return NodeConfig(
        data_dir=data_dir,
        name=node["name"],
        url=node["url"],
        host=doc.get("listen", {}).get("host", "127.0.0.1"),
        port=doc.get("listen", {}).get("port", 8700),
        tick=float(doc.get("engine", {}).get("tick", 30.0)),
        passphrase_file=doc.get("identity", {}).get("passphrase_file", PASSPHRASE_FILE),
        max_body=lim.get("max_body", 64 * 1024),
        max_register_body=lim.get("max_register_body", 4 * 1024 * 1024),
        rate_per_key=float(lim.get("rate_per_key", 20.0)),
        rate_burst=lim.get("rate_burst", 100),
        peer_rate_per_key=float(lim.get("peer_rate_per_key", 500.0)),
        timestamp_tolerance=lim.get("timestamp_tolerance", 300),
        metrics=doc.get("metrics", {}).get("enabled", False),
        metrics_listen=_metrics_listen(doc.get("metrics", {})),
        dashboard=doc.get("dashboard", {}).get("enabled", False),
        dashboard_listen=_dashboard_listen(doc.get("dashboard", {})),
        peer_timeout=float(peers.get("timeout", 5.0)),
        peer_urls={str(k): str(v) for k, v in peers.get("urls", {}).items()},
        smtp=smtp,
        operator_email=notify.get("operator_email", ""),
        operator_webhook=notify.get("operator_webhook", ""),
        webhook_timeout=float(notify.get("webhook_timeout", 10.0)),
        contacts=contacts,
        verify_processes=verify,
        registration=registration,
        proxy=proxy,
    )


def _network_proxy(network: dict[str, Any], peer_urls: dict[str, Any]) -> str | None:
    """[network] proxy, checked; an onion peer URL without a proxy is refused at start-up."""
    from vault.nodeproto.transport import check_proxy, is_onion

    try:
        proxy = check_proxy(network.get("proxy"))
    except ValueError as exc:
        raise ConfigError(f"node.toml: [network] proxy: {exc}") from exc
    if proxy is None and any(is_onion(str(u)) for u in peer_urls.values()):
        raise ConfigError(
            "node.toml: [peers] urls names an onion address but [network] proxy is not set",
            hint='add [network] proxy = "socks5h://127.0.0.1:9050" (the Tor SOCKS port)',
        )
    return proxy


def _registration(section: dict[str, Any]) -> RegistrationConfig:
    """[registration]; a missing section means closed registration and public targets only."""
    mode = section.get("mode", "closed")
    if mode not in REGISTRATION_MODES:
        raise ConfigError(
            f"node.toml: [registration] mode must be one of {', '.join(REGISTRATION_MODES)}"
        )
    nets = []
    for net in section.get("allowed_networks", []):
        try:
            nets.append(str(ipaddress.ip_network(net, strict=False)))
        except (TypeError, ValueError):
            raise ConfigError(
                f"node.toml: [registration] allowed_networks holds {net!r}, which is not a CIDR"
            ) from None
    ttl = section.get("invite_ttl", DEFAULT_INVITE_TTL)
    if ttl <= 0:
        raise ConfigError("node.toml: [registration] invite_ttl must be positive")
    return RegistrationConfig(
        mode=mode,
        allow_private_targets=section.get("allow_private_targets", False),
        allowed_networks=tuple(nets),
        invite_ttl=ttl,
    )


def _metrics_listen(section: dict[str, Any]) -> str:
    """[metrics] listen, checked to be a loopback address (metrics.parse_listen)."""
    from .metrics import DEFAULT_LISTEN, parse_listen

    listen = section.get("listen", DEFAULT_LISTEN)
    parse_listen(listen)
    return listen


def _dashboard_listen(section: dict[str, Any]) -> str:
    """[dashboard] listen, checked to be a loopback address (dashboard.parse_listen)."""
    from .dashboard import DEFAULT_LISTEN, parse_listen

    listen = section.get("listen", DEFAULT_LISTEN)
    parse_listen(listen)
    return listen


def write_default_config(
    data_dir: Path, name: str, url: str, host: str, port: int, registration: str = "closed"
) -> Path:
    doc = {
        "node": {"name": name, "url": url},
        "listen": {"host": host, "port": port},
        "engine": {"tick": 30},
        "identity": {"passphrase_file": PASSPHRASE_FILE},
        "limits": {"rate_per_key": 20, "rate_burst": 100, "timestamp_tolerance": 300},
        "smtp": {"host": "", "port": 587, "security": "starttls", "from": "velador-node@localhost"},
        "notify": {"operator_email": "", "operator_webhook": ""},
        "metrics": {"enabled": False, "listen": "127.0.0.1:9464"},
        "dashboard": {"enabled": False, "listen": "127.0.0.1:9465"},
        "registration": {"mode": registration, "allow_private_targets": False},
    }
    path = data_dir / CONFIG_FILE
    path.write_text(tomli_w.dumps(doc), "utf-8")
    os.chmod(path, 0o600)
    return path


def read_passphrase(config: NodeConfig) -> str:
    """How the unattended service unlocks its key (docs/guide-operator.md §4).

    Order: the systemd credential `velador-node-passphrase` ($CREDENTIALS_DIRECTORY), then the
    environment variable VELADOR_NODE_PASSPHRASE, then the file named in [identity]
    passphrase_file (relative to DIR, must not be readable by group or others).
    """
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).is_file():
        return (Path(cred_dir) / CREDENTIAL_NAME).read_text("utf-8").rstrip("\n")
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    path = Path(config.passphrase_file)
    if not path.is_absolute():
        path = config.data_dir / path
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            "no passphrase for the node identity",
            hint=f"provide the systemd credential {CREDENTIAL_NAME}, ${PASSPHRASE_ENV}, "
            f"or the file {path}",
        ) from None
    if st.st_mode & 0o077:
        raise ConfigError(f"{path} is readable by other users", hint=f"chmod 600 {path}")
    return path.read_text("utf-8").rstrip("\n")
