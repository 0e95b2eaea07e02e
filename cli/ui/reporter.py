"""The reporter's pages: check in, cases, deposit, the case wizard, pause/resume, audit.

Each action is the same vault/ call its CLI command makes (cli/switch_cmds.py, cli/case_cmds.py,
cli/data_cmds.py), with the same rules: a check-in under the duress passphrase goes through
vault.checkin exactly as `velador checkin` does, and nothing on a page depends on which
passphrase unlocked the identity (docs/threat-model.md, "Duress").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from vault.checkin import checkin
from vault.custody import audit
from vault.deposit import deposit
from vault.durations import parse_when
from vault.errors import NotFoundError, VeladorError
from vault.released import known_release
from vault.switch import act, arming_state, gather_status, make_case_card, switch_cases

from ..i18n import _
from .app import Ui, form, see_other
from .common import Progress, current, error_line, gate, job_progress, new_job, start_job


def state_word(state: str | None) -> str:
    """A node's state in plain words (the English keys are the protocol's state names)."""
    words = {
        "ARMED": _("watching"),
        "REMINDED": _("watching, reminder sent"),
        "OVERDUE": _("deadline missed: check in now"),
        "EDITOR_PENDING": _("editors asked for a release"),
        "PAUSED": _("paused"),
        "DESTROYING": _("being destroyed"),
        "RELEASED": _("RELEASED"),
        "DESTROYED": _("destroyed"),
    }
    if state is None:
        return _("no answer yet")
    return words.get(state, state)


def local_word(local: str) -> str:
    return {
        "armed": _("armed"),
        "arming": _("not armed at every node"),
        "offline": _("no escrow nodes"),
        "released": _("RELEASED"),
        "destroyed": _("destroyed"),
    }.get(local, local)


def case_view(ui: Ui, rec: Any) -> dict[str, Any]:
    """What the laptop knows of a case, from the nodes' last answers (no network)."""
    state = ui.state
    views = {v["node"]: v for v in state.node_views(rec.case_id)}
    nodes = []
    for card in rec.policy.nodes:
        v = views.get(card.fingerprint)
        st = v["state"] if v else None
        deadline = None
        if v:
            deadline = v["deadline"] or (v["paused_until"] if st == "PAUSED" else None)
        nodes.append(
            {
                "name": state.alias_of(card) or card.name,
                "state": st,
                "word": state_word(st),
                "deadline": deadline,
                "release_at": v["release_at"] if v else None,
                "answered": v["time"] if v else None,
                "bad": st in ("OVERDUE", "EDITOR_PENDING", "RELEASED"),
            }
        )
    live = [n["deadline"] for n in nodes if n["deadline"] and n["state"] not in ("PAUSED",)]
    info = known_release(rec)
    local = arming_state(state, rec)
    sw = rec.policy.switch
    return {
        "name": rec.name,
        "case_id": rec.case_id,
        "local": local,
        "local_word": local_word(local),
        "release": info,
        "released": info is not None and info.complete,
        "nodes": nodes,
        "next_deadline": min(live) if live else None,
        "paused": any(n["state"] == "PAUSED" for n in nodes),
        "pending": any(n["state"] == "EDITOR_PENDING" for n in nodes),
        "switch": sw,
        "snapshot": state.last_snapshot(rec.case_id),
        "card": make_case_card(rec.policy) if rec.policy.nodes else None,
        "threshold": rec.policy.spec.groups[0][0] if len(rec.policy.spec.groups) == 1 else None,
    }


def _require(request: Request) -> Any:
    """The unlocked identity (after _gate)."""
    return current(request).identity


def _gate(ui: Ui, request: Request) -> Response | None:
    return gate(ui, request)


def _case(ui: Ui, name: str) -> Any:
    return ui.state.case(name)


def register(app: FastAPI, ui: Ui) -> None:
    from .wizard import register as register_wizard

    register_wizard(app, ui)  # first: /cases/new before /cases/{name}

    @app.get("/")
    def home(request: Request) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        ident = _require(request)
        if ident.role == "editor":
            return see_other("/editor")
        if ident.role == "outlet":
            return see_other("/outlet")
        if ident.role != "reporter":
            return see_other("/contacts")
        cases = [case_view(ui, r) for r in ui.state.cases()]
        watched = [c for c in cases if c["next_deadline"] and not c["released"]]
        nearest = min((c["next_deadline"] for c in watched), default=None)
        return ui.render(
            request,
            "home.html",
            cases=cases,
            nearest=nearest,
            last=current(request).data.get("checkin"),
        )

    @app.post("/checkin")
    def do_checkin(request: Request) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        ident = _require(request)
        sess = current(request)
        state, clock = ui.state, ui.config.clock
        # As `velador checkin` (cli/switch_cmds.py): under the normal passphrase a case closed on
        # this laptop that no node confirmed closed is checked in again; under duress it is not.
        revive = not ident.duress
        recs = switch_cases(state, (), revive=revive)
        if not recs:
            sess.notice(
                "error",
                _("You have no armed case to check in. Create one first."),
            )
            return see_other("/")
        try:
            done = checkin(state, ident, clock, recs, ui.config.timeout)
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other("/")
        now = clock.now()
        summary = []
        for c in done:
            summary.append(
                {
                    "case": c.case,
                    "reached": c.reached,
                    "total": len(c.results),
                    "next_deadline": c.next_deadline,
                    "released": c.release is not None and c.release.complete,
                    "queued": [r.node for r in c.results if r.queued],
                }
            )
        sess.data["checkin"] = {"time": now, "cases": summary}
        if all(s["reached"] == 0 for s in summary):
            sess.notice(
                "error",
                _(
                    "No node could be reached. Your check-in is saved and will be sent again: "
                    "check your connection and press the button again."
                ),
            )
        else:
            sess.notice("ok", _("Checked in. Thank you."))
        return see_other("/")

    @app.get("/cases/{name}")
    def case_page(request: Request, name: str) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        try:
            rec = _case(ui, name)
        except NotFoundError as exc:
            current(request).notice("error", error_line(exc))
            return see_other("/")
        return ui.render(
            request,
            "case.html",
            case=case_view(ui, rec),
            case_actions=ui.case_actions,
            status=current(request).data.get(f"status:{rec.case_id}"),
            audit=current(request).data.get(f"audit:{rec.case_id}"),
        )

    @app.post("/cases/{name}/status")
    def case_status(request: Request, name: str) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        sess = current(request)
        try:
            rec = _case(ui, name)
            st = gather_status(ui.state, _require(request), ui.config.clock, rec, ui.config.timeout)
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other(f"/cases/{name}")
        pending = [r.body for r in st.results if r.ok and r.body and r.body.get("pending_until")]
        sess.data[f"status:{rec.case_id}"] = {
            "time": ui.config.clock.now(),
            "reached": sum(1 for r in st.results if r.ok),
            "total": len(st.results),
            "pending": (
                {
                    "asked": pending[0].get("editor_requests"),
                    "quorum": pending[0].get("editor_quorum"),
                    "until": min(p["pending_until"] for p in pending),
                }
                if pending
                else None
            ),
        }
        return see_other(f"/cases/{name}")

    @app.post("/cases/{name}/action")
    async def case_action(request: Request, name: str) -> Response:
        """Pause, resume, object: `velador pause|resume|release object` with its confirmation."""
        if (gate := _gate(ui, request)) is not None:
            return gate
        data = await form(request)
        sess = current(request)
        action = data.get("action", "")
        if action not in ("pause", "resume", "object"):
            return see_other(f"/cases/{name}")
        try:
            rec = _case(ui, name)
            args: list[Any] = []
            if action == "pause":
                args.append(parse_when(data.get("until", ""), ui.config.clock.now(), "until"))
            results = act(
                ui.state,
                _require(request),
                ui.config.clock,
                rec,
                action,
                *args,
                timeout=ui.config.timeout,
            )
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other(f"/cases/{name}")
        ok = sum(1 for r in results if r.ok)
        text = {
            "pause": _("Paused at %(ok)d of %(total)d nodes."),
            "resume": _("Resumed at %(ok)d of %(total)d nodes."),
            "object": _("Your objection reached %(ok)d of %(total)d nodes."),
        }[action]
        sess.data.pop(f"status:{rec.case_id}", None)  # the nodes' answers changed: ask again
        kind = "ok" if ok == len(results) else "error"
        sess.notice(kind, text % {"ok": ok, "total": len(results)})
        return see_other(f"/cases/{name}")

    @app.post("/cases/{name}/audit")
    def case_audit(request: Request, name: str) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        sess = current(request)
        try:
            rec = _case(ui, name)
            rep = audit(
                ui.state,
                _require(request),
                ui.config.clock,
                rec,
                ui.config.s3_endpoint,
                ui.config.timeout,
            )
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other(f"/cases/{name}")
        sess.data[f"audit:{rec.case_id}"] = {
            "recoverable": rep.recoverable,
            "reasons": list(rep.reasons),
            "nodes": [(n["node"], n["ok"]) for n in rep.nodes],
            "stores": [(s["store"], s["objects"], s["n_missing"]) for s in rep.stores],
        }
        return see_other(f"/cases/{name}")

    # --- deposit ------------------------------------------------------------------------------

    @app.get("/deposit")
    def deposit_page(request: Request) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        cases = [r.name for r in ui.state.cases() if r.status not in ("released", "destroyed")]
        return ui.render(
            request, "deposit.html", cases=cases, chosen=request.query_params.get("case", "")
        )

    @app.post("/deposit")
    async def deposit_start(request: Request) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        data = await form(request)
        sess = current(request)
        folder = Path(data.get("path", "").strip()).expanduser()
        try:
            rec = _case(ui, data.get("case", ""))
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other("/deposit")
        if not data.get("path", "").strip() or not folder.exists():
            sess.notice(
                "error",
                _("There is no file or folder at %(path)s on this laptop.") % {"path": str(folder)},
            )
            return see_other(f"/deposit?case={rec.name}")
        job = new_job(ui, "deposit", rec.name, path=str(folder))
        ident = _require(request)
        start_job(job, lambda progress: _run_deposit(ui, ident, rec, folder, progress))
        return see_other(f"/jobs/{job['id']}")

    @app.get("/jobs/{job_id}")
    def job_page(request: Request, job_id: str) -> Response:
        if (gate := _gate(ui, request)) is not None:
            return gate
        job = ui.jobs.get(job_id)
        if job is None:
            return see_other("/")
        return ui.render(request, "job.html", job=job, job_id=job_id)

    @app.get("/jobs/{job_id}/progress")
    def deposit_progress(request: Request, job_id: str) -> Response:
        return job_progress(ui, request, job_id)


def _run_deposit(ui: Ui, ident: Any, rec: Any, folder: Path, progress: Progress) -> dict[str, Any]:
    """`velador deposit CASE PATH` in a job's thread: the same lock, the same resume rules (a
    deposit interrupted or failed is simply run again and uploads only what is missing)."""
    from vault.state import LocalState

    from ..agent_deposits import deposit_lock

    state = LocalState(ui.home)  # this thread's own connection to the local database
    with deposit_lock(ui.home, wait=True):
        res = deposit(
            state,
            ident,
            state.case(rec.case_id),
            [folder],
            ui.config.clock,
            progress=progress,
            s3_endpoint=ui.config.s3_endpoint,
        )
    return {
        "files": res.files,
        "bytes": res.bytes_total,
        "uploaded": res.bytes_uploaded,
        "seq": res.seq,
        "unchanged": res.unchanged,
        "changed": list(res.changed),
        "skipped": list(res.skipped),
    }
