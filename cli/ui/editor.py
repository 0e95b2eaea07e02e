"""The editor's pages: ask for a release, and follow the quorum and the objection window.

The same calls as `velador release request` and `velador status CASE_CARD` (cli/outlet_cmds.py,
cli/switch_cmds.py): a signed request to every node of the case, judged node by node with the
CLI's own rules (cli/request_view.py Asked, vault/switch.py foreign_status). The reason is typed
in the page and travels only in the form's POST body to this process and, signed, to the nodes:
never in a URL, the server's log or the browser's storage (docs/threat-model.md, "The local
browser app").
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from vault.errors import VeladorError
from vault.netrecover import contacts_ref
from vault.switch import fan_out

from ..i18n import _
from .app import Ui, form, see_other
from .common import current, error_line, gate

MAX_REASON = 1000
"""As the CLI: the reason says why, in 1 to 1000 characters."""


def _ref(ui: Ui, text: str) -> Any:
    return contacts_ref(text.strip(), [card for _, card in ui.state.contacts()])


def _status(ui: Ui, ident: Any, text: str) -> dict[str, Any]:
    """Each node's view of a case this editor does not own (as `velador status CASE_CARD`)."""
    from vault.switch import foreign_status

    ref = _ref(ui, text)
    results = foreign_status(ref, ident, ui.config.clock, ui.config.timeout)
    bodies = [r.body for r in results if r.ok and r.body]
    pending = [b for b in bodies if b.get("pending_until")]
    return {
        "case_id": ref.case_id,
        "reached": len(bodies),
        "total": len(results),
        "states": sorted({str(b.get("state")) for b in bodies}),
        "asked": max((int(b.get("editor_requests") or 0) for b in bodies), default=0),
        "quorum": max((int(b.get("editor_quorum") or 0) for b in bodies), default=0),
        "until": min((int(b["pending_until"]) for b in pending), default=None),
        "released": any(b.get("state") == "RELEASED" for b in bodies),
    }


def register(app: FastAPI, ui: Ui) -> None:
    @app.get("/editor")
    def editor_page(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        sess = current(request)
        return ui.render(
            request,
            "editor.html",
            cases=sess.data.setdefault("editor_cases", {}),
        )

    @app.post("/editor/status")
    async def editor_status(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        data = await form(request)
        sess = current(request)
        try:
            st = _status(ui, sess.identity, data.get("case", ""))
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other("/editor")
        st["card"] = data.get("case", "").strip()
        st["time"] = ui.config.clock.now()
        sess.data.setdefault("editor_cases", {})[st["case_id"]] = st
        return see_other("/editor")

    @app.post("/editor/request")
    async def editor_request(request: Request) -> Response:
        from ..request_view import Asked

        if (refused := gate(ui, request)) is not None:
            return refused
        data = await form(request)
        sess = current(request)
        reason = data.get("reason", "").strip()
        text = data.get("case", "")
        if not reason or len(reason) > MAX_REASON:
            sess.notice("error", _("Write why you ask for the release (1 to 1000 characters)."))
            return see_other("/editor")
        if data.get("confirm") != "yes":
            sess.notice(
                "error",
                _("Tick the box to confirm: your request counts toward a release at once."),
            )
            return see_other("/editor")
        try:
            ref = _ref(ui, text)
            answers = fan_out(
                ref.nodes,
                sess.identity,
                ui.config.clock,
                lambda c: c.release_request(ref.case_id, reason),
                ui.config.timeout,
            )
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other("/editor")
        # The reason was sent, signed, to the nodes; nothing here keeps it (no log, no session).
        asked = [Asked.of(c, a.error, a.body) for c, a in zip(ref.nodes, answers, strict=True)]
        holding = [a for a in asked if a.outcome != "does not hold the case"]
        accepted = [a for a in holding if a.outcome == "accepted"]
        if accepted and len(accepted) == len(holding):
            sess.notice(
                "ok",
                _("Your request reached all %(n)d nodes of the case.") % {"n": len(accepted)},
            )
        else:
            sess.notice(
                "error",
                _(
                    "Your request reached %(ok)d of %(n)d nodes. Only the editors the reporter "
                    "named can ask; try again later for the nodes that did not answer."
                )
                % {"ok": len(accepted), "n": len(holding)},
            )
        try:
            st = _status(ui, sess.identity, text)
            st["card"], st["time"] = text.strip(), ui.config.clock.now()
            sess.data.setdefault("editor_cases", {})[st["case_id"]] = st
        except VeladorError:
            pass
        return see_other("/editor")
