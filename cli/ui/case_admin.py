"""The reporter's case administration in the browser: rotate the key, drills, destroy (issue 15).

Each page is the CLI command's own call (no second implementation of any rule):

- rotate: `velador case rotate` -> vault.case.rotate_and_register, in a thread with the deposit's
  progress page mechanism (the keyring goes to every store and the policy to every node, each up
  to the node timeout); "Finish the rotation" is `velador case arm` (vault.switch.arm);
- drill: `velador drill CASE` -> vault.drill.start_case, and `velador drill report` ->
  vault.drill.collect + verdict, shown with cli/drill_cmds.py's own lines;
- destroy: `velador case destroy` -> vault.switch.act(..., "destroy").

Rotate and destroy cannot be undone, so, as the CLI asks "Really ...? [y/N]" (cli/switch_cmds.py
`confirm`), the button on the case page only shows a page that says what the action does and
what it does not, with the CLI's question. The action runs only when that page's form comes
back with the one-time value the page carried: a forged or repeated POST (another site's page
is refused earlier, by the Origin check) finds no value and is shown the question again.

Duress: nothing here looks at `identity.duress`; the vault calls behave under the duress
passphrase exactly as the CLI's do (docs/threat-model.md, "Duress"), so the pages are the same.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from vault import drill as vdrill
from vault.case import rotate_and_register
from vault.errors import N_, NotFoundError, VeladorError
from vault.switch import ArmReport, act, arm

from ..i18n import _
from .app import Ui, form, see_other
from .common import current, error_line, gate, new_job, start_job

ACTIONS = [
    (N_("Drill"), "/cases/{case}/drill"),
    (N_("Rotate the key"), "/cases/{case}/rotate"),
    (N_("Destroy the case"), "/cases/{case}/destroy"),
]
"""The buttons this module adds to the case page (cli/ui/app.py `Ui.case_actions`)."""


def ask(sess: Any, what: str, case_id: str) -> str:
    """A one-time value for the confirmation page of `what` (kept in the session only)."""
    value = secrets.token_urlsafe(16)
    sess.data[f"confirm:{what}:{case_id}"] = value
    return value


def confirmed(sess: Any, what: str, case_id: str, given: str | None) -> bool:
    """True once, for the value the confirmation page carried; spent either way."""
    good = sess.data.pop(f"confirm:{what}:{case_id}", None)
    return bool(good and given and hmac.compare_digest(good.encode(), given.encode()))


def arm_view(rep: ArmReport) -> dict[str, Any]:
    """A registration report as the page shows it: per node, its state in plain words."""
    from ..release_view import state_word

    rows = [
        {
            "name": rep.names.get(fp, fp),
            "word": state_word(st),
            "detail": detail or "",
            "ok": st == "registered",
        }
        for fp, (st, detail) in rep.regs.items()
    ]
    return {
        "armed": rep.armed,
        "ok": sum(1 for r in rows if r["ok"]),
        "total": len(rows),
        "nodes": rows,
        "needs_invite": list(rep.needs_invite),
    }


def run_rotation(ui: Ui, ident: Any, name: str, folder: Path | None) -> dict[str, Any]:
    """`velador case rotate NAME --yes` in a job's thread: the keyring goes to every store and
    the new policy to every node (each up to the node timeout), which can take more than a
    moment."""
    from vault.state import LocalState

    state = LocalState(ui.home)  # this thread's own connection to the local database
    rot, rep = rotate_and_register(
        state,
        ident,
        name,
        ui.config.clock,
        ui.config.timeout,
        offline_dir=folder,
        s3_endpoint=ui.config.s3_endpoint,
    )
    return {
        "policy": rot.new.policy.hash[:16],
        "keyring": rot.keyring_key,
        "share_files": [str(p) for p in rot.new.offline_files],
        "arm": arm_view(rep) if rep is not None else None,
    }


def drill_report(ui: Ui, ident: Any, rec: Any) -> dict[str, Any]:
    """`velador drill report CASE`: the same calls and the same lines, for the page."""
    from ..drill_cmds import answer_lines, party_names, report_lines, report_problem, verdict_lines

    clock = ui.config.clock
    reports = vdrill.collect(ident, rec.policy, clock, ui.config.timeout)
    name = party_names(ui.state, rec.policy)
    v = vdrill.verdict(rec.policy, reports, name)
    now = clock.now()
    problem = report_problem(v, rec.name)
    return {
        "time": now,
        "ok": v.ok,
        "drill": v.drill,
        "verdict": verdict_lines(v) if v.drill else [],
        "answers": answer_lines(rec.policy, reports, name, now),
        "details": report_lines(rec.policy, reports, name, now),
        "problem": error_line(problem) if problem is not None else None,
    }


def register(app: FastAPI, ui: Ui) -> None:
    ui.case_actions.extend(ACTIONS)

    def case_or_home(request: Request, name: str) -> Any:
        try:
            return ui.state.case(name)
        except NotFoundError as exc:
            current(request).notice("error", error_line(exc))
            return None

    def confirm_page(request: Request, sess: Any, what: str, rec: Any, offline: int) -> Response:
        """What `what` does and does not do, and the CLI's own question (cli/switch_cmds.py)."""
        from ..switch_cmds import CONFIRM

        return ui.render(
            request,
            "confirm_case.html",
            what=what,
            case=rec.name,
            question=_(CONFIRM[what][0]) % {"case": rec.name},
            nonce=ask(sess, what, rec.case_id),
            offline=offline,
        )

    # --- rotate -------------------------------------------------------------------------------

    @app.post("/cases/{name}/rotate")
    async def rotate(request: Request, name: str) -> Response:
        """`velador case rotate NAME`, after the CLI's question."""
        if (refused := gate(ui, request)) is not None:
            return refused
        data = await form(request)
        sess = current(request)
        if (rec := case_or_home(request, name)) is None:
            return see_other("/")
        offline = [h for h in rec.policy.holders if h.kind == "offline"]
        if not confirmed(sess, "rotate", rec.case_id, data.get("confirm")):
            return confirm_page(request, sess, "rotate", rec, len(offline))
        folder = data.get("offline_dir", "").strip()
        job = new_job(ui, "rotate", rec.name)
        ident, where = sess.identity, Path(folder).expanduser() if folder else None
        start_job(job, lambda _progress: run_rotation(ui, ident, rec.name, where))
        return see_other(f"/cases/{rec.name}/rotated/{job['id']}")

    @app.get("/cases/{name}/rotated/{job_id}")
    def rotated(request: Request, name: str, job_id: str) -> Response:
        """The rotation's progress, then its result per node and the next step."""
        if (refused := gate(ui, request)) is not None:
            return refused
        job = ui.jobs.get(job_id)
        if job is None or job.get("kind") != "rotate" or job["case"] != name:
            return see_other(f"/cases/{name}")
        if job["state"] != "running" and (rec := case_or_home(request, name)) is not None:
            current(request).data.pop(f"status:{rec.case_id}", None)  # the nodes changed
        return ui.render(request, "rotated.html", case=name, job=job, result=job["result"])

    @app.post("/cases/{name}/arm")
    def finish(request: Request, name: str) -> Response:
        """`velador case arm NAME` (= `case rotate --resume`): the nodes that missed it."""
        if (refused := gate(ui, request)) is not None:
            return refused
        sess = current(request)
        if (rec := case_or_home(request, name)) is None:
            return see_other("/")
        try:
            rep = arm(ui.state, sess.identity, rec, ui.config.clock, ui.config.timeout)
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
            return see_other(f"/cases/{rec.name}")
        job = new_job(ui, "rotate", rec.name)
        job["result"] = {"policy": rec.policy.hash[:16], "share_files": [], "arm": arm_view(rep)}
        job["state"] = "done"
        return see_other(f"/cases/{rec.name}/rotated/{job['id']}")

    # --- drills -------------------------------------------------------------------------------

    @app.post("/cases/{name}/drill")
    async def drill(request: Request, name: str) -> Response:
        """`velador drill NAME` (step=start) and `velador drill report NAME` (step=report)."""
        if (refused := gate(ui, request)) is not None:
            return refused
        data = await form(request)
        sess = current(request)
        if (rec := case_or_home(request, name)) is None:
            return see_other("/")
        step = data.get("step", "")
        key = f"drill:{rec.case_id}"
        try:
            if step == "start":
                drill_id, results = vdrill.start_case(
                    ui.state, sess.identity, rec, ui.config.clock, ui.config.timeout
                )
                sess.data[key] = {
                    "started": {
                        "drill": drill_id,
                        "ok": sum(1 for r in results if r.ok),
                        "nodes": [
                            (r.node, _("started") if r.ok else error_line(r.error)) for r in results
                        ],
                    }
                }
            elif step == "report":
                sess.data[key] = {"report": drill_report(ui, sess.identity, rec)}
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
        return see_other(f"/cases/{rec.name}/drill")

    @app.get("/cases/{name}/drill")
    def drill_page(request: Request, name: str) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        if (rec := case_or_home(request, name)) is None:
            return see_other("/")
        shown = current(request).data.get(f"drill:{rec.case_id}") or {}
        return ui.render(
            request,
            "drill.html",
            case=rec.name,
            started=shown.get("started"),
            report=shown.get("report"),
        )

    # --- destroy ------------------------------------------------------------------------------

    @app.post("/cases/{name}/destroy")
    async def destroy(request: Request, name: str) -> Response:
        """`velador case destroy NAME`, after the CLI's question."""
        from ..switch_cmds import require_all

        if (refused := gate(ui, request)) is not None:
            return refused
        data = await form(request)
        sess = current(request)
        if (rec := case_or_home(request, name)) is None:
            return see_other("/")
        if not confirmed(sess, "destroy", rec.case_id, data.get("confirm")):
            return confirm_page(request, sess, "destroy", rec, 0)
        try:
            results = act(
                ui.state,
                sess.identity,
                ui.config.clock,
                rec,
                "destroy",
                timeout=ui.config.timeout,
            )
            require_all("destroy", results, rec.name)
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
        else:
            sess.notice("ok", _("Case %(case)s is destroyed at every node.") % {"case": rec.name})
        sess.data.pop(f"status:{rec.case_id}", None)
        return see_other(f"/cases/{rec.name}")
