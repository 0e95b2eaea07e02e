"""The `velador` command: thin over vault/ (and escrow_node/ for node commands).

One handler turns every VeladorError into `velador: error: ...` (plus `velador: hint: ...`) on
stderr and the error's exit code; a traceback means a bug, never a user mistake.

Subcommands are imported only when they are run (`_LazyGroup`): a deposit or a check-in should
not pay, in start-up time and memory, for the HTTP client, the node service and the terminal
tables of every other command. `velador --help` imports them all to show their summaries.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from vault import __version__
from vault.errors import VeladorError

from .context import Ctx, apply_proxy, default_home

_COMMANDS: dict[str, tuple[str, str]] = {
    "id": ("id_cmds", "id_group"),
    "contact": ("id_cmds", "contact"),
    "case": ("case_cmds", "case"),
    "deposit": ("data_cmds", "deposit"),
    "snapshots": ("data_cmds", "snapshots"),
    "verify": ("data_cmds", "verify"),
    "recover": ("data_cmds", "recover"),
    "checkin": ("switch_cmds", "checkin_cmd"),
    "status": ("switch_cmds", "status_cmd"),
    "pause": ("switch_cmds", "pause_cmd"),
    "resume": ("switch_cmds", "resume_cmd"),
    "release": ("outlet_cmds", "release_group"),  # the reporter's group plus `release request`
    "audit": ("switch_cmds", "audit_cmd"),
    "agent": ("agent", "agent"),
    "inbox": ("outlet_cmds", "inbox"),
    "notify": ("notify_cmds", "notify_cmd"),
    "node": ("node_cmds", "node"),
}
"""Subcommand name -> (module of this package, attribute): a command, or a function making one."""

_OPTIONAL = {"node"}
"""Commands whose module may be missing (the node service is optional for a reporter)."""


class _LazyGroup(click.Group):
    """A group that imports a subcommand's module the first time the subcommand is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(self.commands) | set(_COMMANDS)
        return sorted(n for n in names if self.get_command(ctx, n) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name]
            try:
                mod = importlib.import_module(f"cli.{module}")
            except ImportError:
                if cmd_name in _OPTIONAL:
                    return None
                raise
            obj = getattr(mod, attr)
            cmd = obj if isinstance(obj, click.Command) else obj()
            self.add_command(cmd, cmd_name)
        return self.commands.get(cmd_name)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="VELADOR_HOME",
    default=None,
    help="Folder with your identity, contacts and cases (env VELADOR_HOME).",
)
@click.option(
    "--s3-endpoint",
    envvar="VELADOR_S3_ENDPOINT",
    default=None,
    help="Endpoint URL for S3-compatible stores (MinIO, Ceph, Garage...).",
)
@click.option(
    "--proxy",
    envvar="VELADOR_PROXY",
    default=None,
    metavar="URL",
    help="SOCKS5 proxy for every connection to escrow nodes, e.g. socks5h://127.0.0.1:9050 "
    "for Tor (env VELADOR_PROXY; or [network] proxy in HOME/config.toml).",
)
@click.version_option(__version__, prog_name="velador")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, s3_endpoint: str | None, proxy: str | None) -> None:
    """Velador: a dead-man's-switch vault for journalists.

    Deposit your work encrypted; escrow nodes or share holders keep the key in pieces; if you go
    silent, your partner outlets recover it and publish.
    """
    home = (home or default_home()).expanduser()
    ctx.obj = Ctx(home=home, s3_endpoint=s3_endpoint, proxy=apply_proxy(home, proxy))


def report_error(exc: VeladorError) -> int:
    click.echo(f"velador: error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"velador: hint: {exc.hint}", err=True)
    return exc.exit_code


def main(argv: list[str] | None = None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="velador", standalone_mode=False)
    except VeladorError as exc:
        sys.exit(report_error(exc))
    except click.exceptions.Abort:
        click.echo("velador: error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("\nvelador: error: interrupted; run the command again to resume", err=True)
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
