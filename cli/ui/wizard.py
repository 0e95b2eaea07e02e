"""The case wizard: `velador case create` as one page of plain explanations, then a summary.

The rules are the CLI's own (vault/caseplan.py: share_spec, build_switch, contact_cards),
shared rather than copied, and the case is made by the same vault calls (vault/case.py
create_case and register_locally, vault/switch.py mark_arming and arm).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import Response

from vault.case import create_case, register_locally
from vault.errors import NotFoundError, PolicyError, VeladorError
from vault.switch import arm, mark_arming

from ..i18n import _
from .app import MAX_FORM_BYTES, Ui, see_other
from .common import current, error_line
from .reporter import _gate

DEFAULTS = {"every": "3d", "grace": "1d", "objection_window": "1d", "remind": "12h,2h"}


async def form_lists(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _one(data: dict[str, list[str]], key: str, default: str = "") -> str:
    values = data.get(key) or [default]
    return values[-1].strip()


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def plan(ui: Ui, data: dict[str, list[str]]) -> dict[str, Any]:
    """Check the form with the CLI's rules; the plan (or a PolicyError) before anything is made."""
    from vault.caseplan import build_switch, contact_cards, share_spec

    name = _one(data, "name")
    if not name:
        raise PolicyError(_("Give the case a name."))
    if ui.state.has_case(name):
        raise PolicyError(_("You already have a case called %(name)s.") % {"name": name})
    nodes = tuple(data.get("node", []))
    recipients = tuple(data.get("recipient", []))
    editors = tuple(data.get("editor", []))
    if not nodes:
        raise PolicyError(_("Choose at least one escrow node."))
    if not recipients:
        raise PolicyError(_("Choose at least one outlet that will receive the material."))
    node_cards = contact_cards(ui.state, nodes, "node")
    every, grace = _one(data, "every", "3d"), _one(data, "grace", "1d")
    window = _one(data, "objection_window") if editors else None
    switch = build_switch(
        ui.state,
        editors,
        _int(_one(data, "editor_quorum")) if editors else None,
        window or None,
        every,
        grace,
        _one(data, "remind", DEFAULTS["remind"]) or None,
        "alert",
    )
    threshold = _int(_one(data, "threshold")) or 0
    spec = share_spec(threshold, len(node_cards), None, None)
    cards = contact_cards(ui.state, recipients, "recipient")
    return {
        "name": name,
        "nodes": nodes,
        "node_cards": node_cards,
        "recipients": recipients,
        "recipient_cards": cards,
        "editors": editors,
        "switch": switch,
        "spec": spec,
        "threshold": threshold,
        "every": every,
        "grace": grace,
        "window": window,
        "stores": [f"file://{(ui.home / 'store').resolve()}"],
    }


def register(app: FastAPI, ui: Ui) -> None:
    def contacts_by_role() -> dict[str, list[tuple[str, Any]]]:
        out: dict[str, list[tuple[str, Any]]] = {"node": [], "outlet": [], "editor": []}
        for alias, card in ui.state.contacts():
            out.setdefault(card.role, []).append((alias, card))
        return out

    def page(request: Request, data: dict[str, list[str]], status: int = 200) -> Response:
        return ui.render(
            request,
            "wizard.html",
            status_code=status,
            contacts=contacts_by_role(),
            data=data,
            one=lambda k, d="": _one(data, k, DEFAULTS.get(k, d)),
        )

    @app.get("/cases/new")
    def wizard(request: Request) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        return page(request, {})

    @app.post("/cases/new")
    async def wizard_post(request: Request) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        data = await form_lists(request)
        sess = current(request)
        step = _one(data, "step", "review")
        try:
            p = plan(ui, data)
        except (PolicyError, NotFoundError, VeladorError) as exc:
            return ui.render(
                request,
                "wizard.html",
                status_code=400,
                contacts=contacts_by_role(),
                data=data,
                one=lambda k, d="": _one(data, k, DEFAULTS.get(k, d)),
                notices=[("error", error_line(exc))],
            )
        if step == "edit":
            return page(request, data)
        if step != "create":
            return ui.render(request, "wizard_review.html", plan=p, data=data)
        ident = sess.identity
        state, clock = ui.state, ui.config.clock
        try:
            new = create_case(
                state,
                ident,
                p["name"],
                p["recipient_cards"],
                p["spec"],
                p["stores"],
                clock,
                nodes=p["node_cards"],
                switch=p["switch"],
                s3_endpoint=ui.config.s3_endpoint,
                offline_dir=None,
            )
            register_locally(state, ident, p["name"], new, {"offline_dir": ""})
            mark_arming(state, new.policy, clock.now())  # durable before any node is asked
            rep = arm(state, ident, state.case(p["name"]), clock, ui.config.timeout, {})
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other("/")
        if rep.armed:
            sess.notice(
                "ok",
                _("Case %(name)s is armed at all %(n)d nodes. Now deposit your material.")
                % {"name": p["name"], "n": len(rep.regs)},
            )
            return see_other(f"/deposit?case={p['name']}")
        ok = sum(1 for st, _d in rep.regs.values() if st == "registered")
        sess.notice(
            "error",
            _(
                "Case %(name)s is NOT armed yet: %(ok)d of %(n)d nodes have it. Run "
                "'velador case arm %(name)s' when the other nodes are back."
            )
            % {"name": p["name"], "ok": ok, "n": len(rep.regs)},
        )
        return see_other(f"/cases/{p['name']}")
