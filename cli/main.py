"""The `velador` command: thin over vault/ (and escrow_node/ for node commands).

One handler turns every VeladorError into `velador: error: ...` (plus `velador: hint: ...`) on
stderr and the error's exit code; a traceback means a bug, never a user mistake.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from vault import __version__
from vault.errors import VeladorError

from .context import Ctx, default_home


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.version_option(__version__, prog_name="velador")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, s3_endpoint: str | None) -> None:
    """Velador: a dead-man's-switch vault for journalists.

    Deposit your work encrypted; escrow nodes or share holders keep the key in pieces; if you go
    silent, your partner outlets recover it and publish.
    """
    ctx.obj = Ctx(home=(home or default_home()).expanduser(), s3_endpoint=s3_endpoint)


def _register() -> None:
    from . import case_cmds, data_cmds, id_cmds

    for group in (id_cmds.id_group, id_cmds.contact, case_cmds.case):
        cli.add_command(group)
    for cmd in (data_cmds.deposit, data_cmds.snapshots, data_cmds.verify, data_cmds.recover):
        cli.add_command(cmd)
    from . import agent, switch_cmds

    for cmd in (
        switch_cmds.checkin_cmd,
        switch_cmds.status_cmd,
        switch_cmds.pause_cmd,
        switch_cmds.resume_cmd,
        switch_cmds.release,
        switch_cmds.audit_cmd,
        agent.agent,
    ):
        cli.add_command(cmd)
    from . import outlet_cmds

    cli.add_command(outlet_cmds.inbox)
    from .notify_cmds import notify_cmd

    cli.add_command(notify_cmd)
    cli.add_command(outlet_cmds.release_group())  # adds `release request` to the release group
    try:
        from .node_cmds import node
    except ImportError:  # the node service is optional for a reporter-only install
        return
    cli.add_command(node)


_register()


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
