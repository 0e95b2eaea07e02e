"""What every command needs: the home folder, local state, the clock, the passphrase, output."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vault.clock import Clock, SystemClock
from vault.errors import N_, AuthenticationError, FormatError, NotFoundError
from vault.identity import IDENTITY_FILE, Identity, unlock_identity
from vault.passphrase import WeakPassphraseError, require_strong
from vault.state import LocalState

from .i18n import _, error_text

if TYPE_CHECKING:  # rich is imported by the commands that print with it, not by every command
    from rich.console import Console

PASSPHRASE_ENV = "VELADOR_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret
PASSPHRASE_PROMPT = N_("Passphrase")
CONFIG_FILE = "config.toml"
"""HOME/config.toml: settings of this home; today only [network] proxy."""
_TRANSPORT = "vault.nodeproto.transport"


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "velador"


@dataclass
class Ctx:
    home: Path
    clock: Clock = field(default_factory=SystemClock)
    s3_endpoint: str | None = None
    proxy: str | None = None
    """The SOCKS5 proxy every node connection of this command uses (docs/protocol.md §4.9)."""
    _state: LocalState | None = None

    @property
    def state(self) -> LocalState:
        if self._state is None:
            self.require_identity()
            self._state = LocalState(self.home)
        return self._state

    def require_identity(self) -> None:
        """Refuse a home folder without an identity (issue 12 §8): a mistyped --home must not be
        created empty and then answer "No cases yet" as if all were well."""
        if not (self.home / IDENTITY_FILE).is_file():
            raise NotFoundError(
                N_("there is no Velador identity in %(home)s"),
                hint=N_(
                    "check --home (or VELADOR_HOME) for a typo; "
                    "to start a new identity there, run 'velador id new --name NAME'"
                ),
                home=str(self.home),
            )

    def unlock(self, prompt: str = PASSPHRASE_PROMPT) -> Identity:
        return unlock_identity(self.home, get_passphrase(prompt))


def get_passphrase(
    prompt: str = PASSPHRASE_PROMPT, confirm: bool = False, env: str | None = PASSPHRASE_ENV
) -> str:
    """From VELADOR_PASSPHRASE (scripts) or a hidden prompt; never from argv. `prompt` is the
    English text (marked with N_), shown in the reader's language."""
    value_env = os.environ.get(env) if env else None
    if value_env is not None:
        return value_env
    if not sys.stdin.isatty():
        raise AuthenticationError(
            N_("no passphrase available"),
            hint=N_("run in a terminal, or set %(variable)s for scripts"),
            variable=env or PASSPHRASE_ENV,
        )
    value = click.prompt(
        _(prompt),
        hide_input=True,
        confirmation_prompt=_("Type it again to confirm") if confirm else False,
        err=True,
    )
    return str(value)


NEW_TRIES = 3
"""How many times a person at a terminal may retry a new passphrase that is too weak."""


def get_new_passphrase(prompt: str, env: str | None, user_inputs: list[str] | None = None) -> str:
    """A new passphrase, refused when zxcvbn scores it weak (vault/passphrase.py).

    From the environment variable `env` (scripts, tests) it must be strong at once; at a terminal
    the person is told why and shown a suggestion, and asked again."""
    value_env = os.environ.get(env) if env else None
    if value_env is not None:
        require_strong(value_env, user_inputs)
        return value_env
    if not sys.stdin.isatty():
        if env:
            raise AuthenticationError(
                N_("no passphrase available"),
                hint=N_("run in a terminal, or set %(variable)s for scripts"),
                variable=env,
            )
        raise AuthenticationError(
            N_("no passphrase available"), hint=N_("run this command in a terminal")
        )
    for attempt in range(NEW_TRIES):
        value = get_passphrase(prompt, confirm=True, env=None)
        try:
            require_strong(value, user_inputs)
            return value
        except WeakPassphraseError as exc:
            if attempt == NEW_TRIES - 1:
                raise
            message, hint = error_text(exc)
            click.echo(_("velador: %(message)s") % {"message": message}, err=True)
            if hint:
                click.echo(_("velador: hint: %(hint)s") % {"hint": hint}, err=True)
    raise AssertionError("unreachable")  # pragma: no cover


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def out_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True))


def table(*headers: str, **kwargs: Any) -> Any:
    """A rich Table whose cells wrap instead of being cut with '…' (issue 12 §6).

    People read fingerprints aloud and copy times: a narrow terminal must never hide part of
    one. Every column folds (breaks a long word across lines) rather than truncating."""
    from rich.table import Table

    t = Table(*headers, **kwargs)
    for column in t.columns:
        column.overflow = "fold"
        column.no_wrap = False
    return t


def _home_proxy(home: Path) -> str | None:
    path = home / CONFIG_FILE
    if not path.is_file():
        return None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(
            N_("%(path)s is not valid TOML (%(detail)s)"), path=str(path), detail=str(exc)
        ) from exc
    value = doc.get("network", {}).get("proxy") if isinstance(doc.get("network"), dict) else None
    if value is not None and not isinstance(value, str):
        raise FormatError(N_("%(path)s: [network] proxy must be a string"), path=str(path))
    return value


def apply_proxy(home: Path, given: str | None) -> str | None:
    """The proxy for this command: --proxy / VELADOR_PROXY, else HOME/config.toml [network]
    proxy; set as the default of every node client (vault.nodeproto.transport).

    The HTTP client is imported only when a proxy is set (or was imported already), so that
    commands that never reach a node do not pay for it."""
    value = given if given is not None else _home_proxy(home)
    if not value and _TRANSPORT not in sys.modules:
        return None
    from vault.nodeproto import transport

    try:
        transport.set_default_proxy(value or None)
    except ValueError as exc:
        raise FormatError(
            N_("invalid proxy: %(detail)s"),
            hint=N_("for Tor use --proxy socks5h://127.0.0.1:9050"),
            detail=str(exc),
        ) from exc
    return transport.default_proxy()


def home_upload_limit(home: Path) -> int | None:
    """`[network] limit_upload` (KiB/s) in HOME/config.toml: the default of `deposit
    --limit-upload`, for a reporter whose uplink always needs sparing. None when unset."""
    path = home / CONFIG_FILE
    if not path.is_file():
        return None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(N_("%(path)s is not valid TOML"), path=str(path)) from exc
    network = doc.get("network")
    value = network.get("limit_upload") if isinstance(network, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FormatError(
            N_("%(path)s: [network] limit_upload must be a whole number of KiB/s"),
            hint=N_("for example: limit_upload = 512"),
            path=str(path),
        )
    return value
