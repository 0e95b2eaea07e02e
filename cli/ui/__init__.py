"""`velador ui`: the local browser app (issue 15) for reporters, outlets and editors.

It listens on 127.0.0.1 on a free port and opens the default browser at a URL with a one-time
token (cli/ui/security.py says what keeps other sites and other users out). Pages are thin
templates over the same vault/ calls as the CLI. FastAPI and uvicorn are imported only here, when
the command runs.
"""

from __future__ import annotations

import logging
import socket
import sys
import webbrowser

import click

from vault.errors import N_

from .. import i18n
from ..context import Ctx
from ..i18n import _


def ui_language(explicit: str | None) -> str:
    """The language the CLI would choose (cli/i18n.py: `ui --lang`, `velador --lang`, then
    VELADOR_LANG, LANGUAGE, LC_ALL, LC_MESSAGES, LANG), but Spanish first: Spanish when none of
    them names a language, where the CLI says English."""
    root = click.get_current_context(silent=True)
    given = root.find_root().params.get("lang") if root is not None else None
    return i18n.pick_language(explicit or given, default="es")


@click.command(
    "ui",
    help=N_(
        "Open Velador in your browser, on this laptop only (127.0.0.1).\n\n"
        "The link works once: the browser that opens it keeps a session until you stop this "
        "command (Ctrl-C). Your passphrase unlocks the identity inside this process only, and it "
        "locks again after some minutes without use."
    ),
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help=N_("Port (default: a free one).")
)
@click.option("--no-browser", is_flag=True, help=N_("Do not open a browser; print the link only."))
@click.option(
    "--idle",
    type=click.IntRange(30, 24 * 3600),
    default=600,
    show_default=True,
    help=N_("Seconds without use after which the identity is locked again."),
)
@click.option("--lang", "lang", default=None, metavar="es|en", help=N_("Language of the pages."))
@click.pass_obj
def ui_cmd(ctx: Ctx, port: int, no_browser: bool, idle: int, lang: str | None) -> None:
    """`velador ui` (help text above, translated where it is shown)."""
    import uvicorn

    from .app import UiConfig, create_app

    i18n.setup(ui_language(lang))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    # Listen before the link is printed or the browser opened: a connection that arrives while
    # uvicorn starts waits in the backlog instead of being refused.
    sock.listen(64)
    port = sock.getsockname()[1]
    config = UiConfig(
        home=ctx.home, port=port, clock=ctx.clock, idle=idle, s3_endpoint=ctx.s3_endpoint
    )
    app = create_app(config)
    url = app.state.ui.url()
    logging.basicConfig(level=logging.INFO, format="velador ui: %(message)s", stream=sys.stderr)
    click.echo(_("Velador is open at this link (it works once):"))
    click.echo(url)
    click.echo(_("Press Ctrl-C here to stop."))
    sys.stdout.flush()
    if not no_browser:
        webbrowser.open(url)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    server.run(sockets=[sock])
