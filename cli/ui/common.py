"""Pages every role has: unlock and lock, create an identity, your card and your contacts."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from vault import passphrase
from vault.cards import parse_card
from vault.errors import VeladorError
from vault.identity import create_identity, load_card, unlock_identity
from vault.passphrase import MIN_SCORE, require_strong, suggest

from .. import i18n
from ..i18n import _
from .app import Ui, form, new_job_id, see_other


def strength_label(n: int) -> str:
    labels = [_("Very weak"), _("Weak"), _("Fair"), _("Strong"), _("Very strong")]
    return labels[max(0, min(4, n))]


def error_line(exc: VeladorError) -> str:
    """An error as the CLI says it (message, then hint), in the chosen language."""
    message, hint = i18n.error_text(exc)
    return f"{message} ({hint})" if hint else message


def current(request: Request) -> Any:
    return request.state.session


def gate(ui: Ui, request: Request) -> Response | None:
    """Where to send a person who has no identity yet, or whose identity is locked."""
    if not ui.has_identity():
        return see_other("/welcome")
    sess = current(request)
    if sess is None or sess.identity is None:
        return see_other("/unlock")
    return None


Progress = Callable[[int, int], None]


def new_job(ui: Ui, kind: str, case: str, **fields: Any) -> dict[str, Any]:
    """A background job's entry in the app's jobs, polled by its page (job_progress)."""
    job: dict[str, Any] = {
        "id": new_job_id(),
        "kind": kind,
        "case": case,
        "done": 0,
        "total": 0,
        "state": "running",
        "result": None,
        "error": None,
        **fields,
    }
    ui.jobs[job["id"]] = job
    return job


def start_job(job: dict[str, Any], work: Callable[[Progress], dict[str, Any]]) -> None:
    """Run `work` in a thread (deposits, recoveries and rotations wait on stores and nodes);
    what it returns is the job's result, and a failure is the one line the CLI would print."""

    def progress(done: int, total: int) -> None:
        job["done"], job["total"] = done, total

    def run() -> None:
        try:
            job["result"] = work(progress)
            job["state"] = "done"
        except VeladorError as exc:
            job["error"] = error_line(exc)
            job["state"] = "failed"
        except OSError as exc:
            job["error"] = str(exc.strerror or exc)
            job["state"] = "failed"

    threading.Thread(target=run, daemon=True).start()


def job_progress(ui: Ui, request: Request, job_id: str) -> Response:
    """A deposit's or recovery's progress for the page's poller (JSON; 401 once locked)."""
    if gate(ui, request) is not None:
        return JSONResponse({"state": "locked"}, status_code=401)
    job = ui.jobs.get(job_id)
    if job is None:
        return JSONResponse({"state": "gone"}, status_code=404)
    return JSONResponse({"state": job["state"], "done": job["done"], "total": job["total"]})


def register(app: FastAPI, ui: Ui) -> None:
    @app.get("/unlock")
    def unlock_page(request: Request) -> Response:
        if not ui.has_identity():
            return see_other("/welcome")
        card = load_card(ui.home)
        return ui.render(request, "unlock.html", card=card)

    @app.post("/unlock")
    async def unlock(request: Request) -> Response:
        data = await form(request)
        sess = current(request)
        try:
            # The passphrase lives only in this call: the session keeps the unlocked keys.
            sess.identity = unlock_identity(ui.home, data.get("passphrase", ""))
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other("/unlock")
        sess.data.pop("locked_idle", None)
        return see_other("/")

    @app.post("/lock")
    def lock(request: Request) -> Response:
        sess = current(request)
        sess.identity = None
        sess.data.clear()
        return see_other("/unlock")

    @app.get("/welcome")
    def welcome(request: Request) -> Response:
        if ui.has_identity():
            return see_other("/")
        return ui.render(request, "welcome.html", suggestion=suggest(i18n.language()))

    @app.post("/welcome")
    async def create(request: Request) -> Response:
        if ui.has_identity():
            return see_other("/")
        data = await form(request)
        sess = current(request)
        name = data.get("name", "").strip()
        role = data.get("role", "reporter")
        p1, p2 = data.get("passphrase", ""), data.get("passphrase2", "")
        problem = None
        if not name:
            problem = _("Write your name as your partners know it.")
        elif role not in ("reporter", "outlet", "editor"):
            problem = _("Choose who you are: reporter, outlet or editor.")
        elif p1 != p2:
            problem = _("The two passphrases are not the same. Type them again.")
        else:
            try:
                require_strong(p1, [name, role])
            except VeladorError:
                problem = _(
                    "This passphrase is too easy to guess: someone who takes your laptop could "
                    "find it. Use several random words, like the suggestion."
                )
        if problem:
            sess.notice("error", problem)
            return ui.render(
                request,
                "welcome.html",
                status_code=400,
                suggestion=suggest(i18n.language()),
                name=name,
                role=role,
                notices=[("error", problem)],
            )
        create_identity(ui.home, name, role, p1, ui.config.clock.now())
        sess.identity = unlock_identity(ui.home, p1)
        sess.notice("ok", _("Your identity is ready. Share your card with your partners."))
        return see_other("/contacts")

    @app.post("/strength")
    async def strength(request: Request) -> Response:
        # The meter's answer; the passphrase comes in a POST body (never a URL) and is not kept.
        data = await form(request)
        n = passphrase.strength(
            data.get("passphrase", ""), [data.get("name", ""), data.get("role", "")]
        )
        return JSONResponse(
            {
                "score": n,
                "label": _("Strength: %(label)s") % {"label": strength_label(n)},
                "ok": n >= MIN_SCORE,
            },
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/contacts")
    def contacts(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        card = load_card(ui.home)
        rows = ui.state.contacts() if ui.has_identity() else []
        return ui.render(request, "contacts.html", card=card, contacts=rows)

    @app.get("/card.svg")
    def card_qr(request: Request) -> Response:
        import segno

        if (refused := gate(ui, request)) is not None:
            return refused

        card = load_card(ui.home)
        buf = io.BytesIO()
        segno.make(card.text, error="m").save(buf, kind="svg", scale=4, border=2, xmldecl=False)
        return Response(buf.getvalue(), media_type="image/svg+xml")

    @app.post("/contacts/add")
    async def contact_add(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        data = await form(request)
        sess = current(request)
        alias = data.get("alias", "").strip()
        try:
            if not alias:
                raise ValueError
            parsed = parse_card(data.get("card", ""))
            ui.state.add_contact(alias, parsed, ui.config.clock.now())
        except ValueError:
            sess.notice("error", _("Give the contact a short name."))
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
        else:
            sess.notice(
                "ok",
                _("Added %(alias)s: %(name)s, fingerprint %(fingerprint)s")
                % {"alias": alias, "name": parsed.name, "fingerprint": parsed.fingerprint},
            )
        return see_other("/contacts")

    @app.post("/contacts/remove")
    async def contact_remove(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        data = await form(request)
        sess = current(request)
        alias = data.get("alias", "")
        if data.get("confirm") != "yes":
            return ui.render(request, "confirm_remove.html", alias=alias)
        try:
            ui.state.remove_contact(alias)
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
        else:
            sess.notice("ok", _("Removed %(alias)s from your contacts.") % {"alias": alias})
        return see_other("/contacts")
