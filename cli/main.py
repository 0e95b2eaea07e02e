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
from typing import Any

import click

from vault import __version__
from vault.errors import N_, VeladorError

from . import helptext, i18n
from .context import Ctx, apply_proxy, default_home
from .i18n import _

helptext.install()  # click's own words ("Usage:", "Error: ...") through Velador's catalog

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
    "drill": ("drill_cmds", "drill"),
    "ui": ("ui", "ui_cmd"),
}
"""Subcommand name -> (module of this package, attribute): a command, or a function making one."""

_OPTIONAL = {"node"}
"""Commands whose module may be missing (the node service is optional for a reporter)."""


class _LazyGroup(click.Group):
    """A group that imports a subcommand's module the first time the subcommand is asked for.

    It also sets the language of the run before click parses the command line, and gives every
    command it hands out a context whose help page is translated (cli/helptext.py)."""

    context_class = helptext.HelpContext

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        helptext.choose_language(self, args)
        return super().make_context(info_name, args, parent, **extra)

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
        cmd = self.commands.get(cmd_name)
        return helptext.adopt(cmd) if cmd is not None else None


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """--version, with its line in the chosen language (click's own option fixes its text when
    it is made, at import time)."""
    if value and not ctx.resilient_parsing:
        click.echo(_("%(prog)s, version %(version)s") % {"prog": "velador", "version": __version__})
        ctx.exit()


ROOT_HELP = N_(
    "Velador: a dead-man's-switch vault for journalists.\n"
    "\n"
    "\b\n"
    "A case is one investigation: your files, encrypted on this laptop and copied to stores,\n"
    "  and a key split into pieces held by escrow nodes that partner outlets run.\n"
    "A check-in (velador checkin) tells the nodes you are fine; do it before every deadline.\n"
    "The grace period is the extra time after a missed deadline before anything happens.\n"
    "The threshold is how many nodes must agree to hand over their pieces of the key.\n"
    "A release hands the pieces to your recipient outlets when you stay silent past the\n"
    "  deadline and the grace period, or when your editors request it and you do not object.\n"
    "\n"
    "Guides: docs/guide-reporter.md, docs/guide-outlet.md, docs/guide-editor.md and\n"
    "docs/guide-operator.md in the Velador source (Spanish: the same names ending in .es.md)."
)


@click.group(
    cls=_LazyGroup,
    help=ROOT_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="VELADOR_HOME",
    default=None,
    help=N_("Folder with your identity, contacts and cases (env VELADOR_HOME)."),
)
@click.option(
    "--s3-endpoint",
    envvar="VELADOR_S3_ENDPOINT",
    default=None,
    help=N_("Endpoint URL for S3-compatible stores (MinIO, Ceph, Garage...)."),
)
@click.option(
    "--proxy",
    envvar="VELADOR_PROXY",
    default=None,
    metavar="URL",
    help=N_(
        "SOCKS5 proxy for every connection to escrow nodes, e.g. socks5h://127.0.0.1:9050 "
        "for Tor (env VELADOR_PROXY; or [network] proxy in HOME/config.toml)."
    ),
)
@click.option(
    "--lang",
    default=None,
    metavar="es|en",
    help=N_(
        "Language of messages: es (Mexican Spanish) or en; also VELADOR_LANG. Default: from "
        "LANGUAGE/LC_ALL/LANG. Values such as es_MX.UTF-8 work too; anything else means English."
    ),
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help=N_("Show the version and exit."),
)
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    s3_endpoint: str | None,
    proxy: str | None,
    lang: str | None,
) -> None:
    home = (home or default_home()).expanduser()
    ctx.obj = Ctx(home=home, s3_endpoint=s3_endpoint, proxy=apply_proxy(home, proxy))


def report_error(exc: VeladorError) -> int:
    message, hint = i18n.error_text(exc)
    click.echo(_("velador: error: %(message)s") % {"message": message}, err=True)
    if hint:
        click.echo(_("velador: hint: %(hint)s") % {"hint": hint}, err=True)
    return exc.exit_code


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = cli.main(args=args, prog_name="velador", standalone_mode=False)
    except VeladorError as exc:
        sys.exit(report_error(exc))
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C (KeyboardInterrupt) into Abort when not in standalone mode.
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            click.echo("\n" + _("velador: error: interrupted"), err=True)
        else:
            click.echo(_("velador: error: aborted"), err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("\n" + _("velador: error: interrupted"), err=True)
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
