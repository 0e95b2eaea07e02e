"""The FastAPI application of `velador ui`: security middleware, templates, shared helpers.

Pages are thin templates over the same vault/ calls the CLI makes (cli/ui/reporter.py and
friends register their routes here). Nothing is loaded from outside this machine: the templates,
one stylesheet and one small script are in this package, and the QR code is drawn by segno here.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from vault.clock import Clock, SystemClock
from vault.identity import IDENTITY_FILE
from vault.state import LocalState

from .. import i18n
from ..i18n import _, ngettext
from . import security
from .security import COOKIE, HEADERS, Session, Sessions

HERE = Path(__file__).resolve().parent
LOG = logging.getLogger("velador.ui")
MAX_FORM_BYTES = 64 * 1024
"""A form is a few fields (a folder path, a card line, a reason): anything larger is refused."""


@dataclass
class UiConfig:
    """What the server is started with (frozen after start; `port` is the one it listens on)."""

    home: Path
    port: int
    clock: Clock = field(default_factory=SystemClock)
    idle: int = security.DEFAULT_IDLE
    s3_endpoint: str | None = None
    timeout: float = 10.0
    """Seconds to wait for each node, as the CLI's --timeout."""
    token: str | None = None


class Ui:
    """Everything a route needs: config, sessions, templates, local state."""

    def __init__(self, config: UiConfig) -> None:
        import jinja2

        self.config = config
        self.sessions = Sessions(config.clock, config.idle, config.token)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            extensions=["jinja2.ext.i18n"],
        )
        self.env.install_gettext_callables(  # type: ignore[attr-defined]
            lambda s: _(s), lambda s, p, n: ngettext(s, p, n), newstyle=True
        )
        from .. import timefmt

        self.env.globals.update(
            local_time=timefmt.local_time,
            relative=timefmt.relative,
            when=timefmt.when,
            span=timefmt.span,
            role_word=role_word,
        )
        self._local = threading.local()
        self.jobs: dict[str, Any] = {}
        self.case_actions: list[tuple[str, str]] = []
        """(button text, POST path with {case}) that other features add to the case page
        (cli/ui/case_admin.py adds drill, rotate and destroy). A module registers its
        route on the app and appends its button here; the text is marked with N_ and shown
        through _()."""

    @property
    def home(self) -> Path:
        return self.config.home

    def has_identity(self) -> bool:
        return (self.home / IDENTITY_FILE).is_file()

    @property
    def state(self) -> LocalState:
        """This thread's connection to the local database (sqlite3 connections stay in the
        thread that opened them; FastAPI runs page functions in a pool of threads)."""
        st = getattr(self._local, "state", None)
        if st is None:
            st = self._local.state = LocalState(self.home)
        return st

    def url(self) -> str:
        """The URL to open, with the one-time token (printed and given to the browser only)."""
        return (
            f"http://127.0.0.1:{self.config.port}/open?{security.TOKEN_PARAM}={self.sessions.token}"
        )

    def render(
        self, request: Request, template: str, /, status_code: int = 200, **ctx: Any
    ) -> HTMLResponse:
        """The page `template` with `ctx` (positional-only, so a page may pass `name=`)."""
        sess: Session | None = getattr(request.state, "session", None)
        ident = sess.identity if sess else None
        # A page rendered at once (a refused form, status 400) may name its own notices; they
        # join the session's, each shown once.
        notices = sess.take_notices() if sess else []
        notices += [n for n in ctx.pop("notices", []) if n not in notices]
        page = self.env.get_template(template).render(
            lang=i18n.language(),
            session=sess,
            ident=ident,
            notices=notices,
            now=self.config.clock.now(),
            path=request.url.path,
            **ctx,
        )
        return HTMLResponse(page, status_code=status_code)


def role_word(role: str) -> str:
    """A card's role in the reader's language."""
    return {
        "reporter": _("reporter"),
        "outlet": _("outlet"),
        "editor": _("editor"),
        "node": _("escrow node"),
    }.get(role, role)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def form(request: Request) -> dict[str, str]:
    """The url-encoded form body, one value per field (secrets travel only here, never in URLs)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def _refusal(ui: Ui, request: Request, status: int, message: str) -> Response:
    return ui.render(request, "refused.html", status_code=status, message=message)


def create_app(config: UiConfig) -> FastAPI:
    """The app for one `velador ui` run (tests make one per test with an injected clock)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    ui = Ui(config)
    app.state.ui = ui

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        port = ui.config.port
        request.state.session = None
        if not security.host_ok(request.headers.get("host"), port):
            response: Response = Response(
                "velador ui: wrong Host; open the link that 'velador ui' printed\n",
                status_code=421,
                media_type="text/plain",
            )
        elif request.method in security.UNSAFE_METHODS and not security.origin_ok(
            request.headers.get("origin"), port
        ):
            response = _refusal(
                ui, request, 403, _("This request did not come from this page; nothing was done.")
            )
        elif request.url.path == "/open" or request.url.path.startswith("/static/"):
            response = await call_next(request)
        else:
            sess = ui.sessions.get(request.cookies.get(COOKIE))
            if sess is None:
                response = _refusal(
                    ui,
                    request,
                    401,
                    _(
                        "This page needs the link that 'velador ui' printed in the terminal. "
                        "Each link opens once: to get a new one, stop 'velador ui' and start "
                        "it again."
                    ),
                )
            else:
                request.state.session = sess
                response = await call_next(request)
        for key, value in HEADERS.items():
            response.headers[key] = value
        # The path only: never a query string (a token) and never a body (a passphrase).
        LOG.info("%s %s %s", request.method, request.url.path, response.status_code)
        return response

    @app.get("/open")
    def open_session(request: Request) -> Response:
        sess = ui.sessions.open(request.query_params.get(security.TOKEN_PARAM))
        if sess is None:
            return _refusal(
                ui,
                request,
                403,
                _(
                    "This link was already used or is not valid. Each link opens once: to get a "
                    "new one, stop 'velador ui' and start it again."
                ),
            )
        response = see_other("/")
        response.set_cookie(
            COOKIE, sess.sid, httponly=True, samesite="strict", path="/", secure=False
        )
        return response

    @app.post("/lang")
    async def set_lang(request: Request) -> Response:
        data = await form(request)
        if data.get("lang") in i18n.SUPPORTED:
            i18n.setup(data["lang"])
        back = data.get("back", "/")
        return see_other(back if back.startswith("/") and not back.startswith("//") else "/")

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    from . import case_admin, common, editor, outlet, reporter

    common.register(app, ui)
    reporter.register(app, ui)
    case_admin.register(app, ui)
    editor.register(app, ui)
    outlet.register(app, ui)
    return app


def new_job_id() -> str:
    return secrets.token_urlsafe(8)
