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
from vault.errors import N_, AuthenticationError
from vault.identity import Identity, unlock_identity
from vault.state import LocalState

if TYPE_CHECKING:  # rich is imported by the commands that print with it, not by every command
    from rich.console import Console

PASSPHRASE_ENV = "VELADOR_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "velador"


@dataclass
class Ctx:
    home: Path
    clock: Clock = field(default_factory=SystemClock)
    s3_endpoint: str | None = None
    _state: LocalState | None = None

    @property
    def state(self) -> LocalState:
        if self._state is None:
            self._state = LocalState(self.home)
        return self._state

    def unlock(self, prompt: str = "Passphrase") -> Identity:
        return unlock_identity(self.home, get_passphrase(prompt))


def get_passphrase(
    prompt: str = "Passphrase", confirm: bool = False, env: str | None = PASSPHRASE_ENV
) -> str:
    """From VELADOR_PASSPHRASE (scripts) or a hidden prompt; never from argv."""
    value_env = os.environ.get(env) if env else None
    if value_env is not None:
        return value_env
    if not sys.stdin.isatty():
        raise AuthenticationError(
            N_("no passphrase available"),
            hint=N_("run in a terminal, or set %(variable)s for scripts"),
            variable=env or PASSPHRASE_ENV,
        )
    value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    return str(value)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def out_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True))
