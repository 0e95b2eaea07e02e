"""The outlet's pages: the inbox (one line per event) and recovery into a chosen folder.

The inbox shows every notice the nodes in your contacts still hold, grouped and worded by the
CLI's own cli/inbox_view.py (as `velador inbox --all`: it marks nothing as seen, so the
terminal's `velador inbox` still shows its new notices). Recovery makes the calls `velador recover
CASE_CARD --out DIR` makes (vault/netrecover.py gather and combine_released, vault/keyrings.py
older_keys, vault/recover.py restore), in a thread with a progress bar, and then shows the
reporter's instructions and the provenance summary.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from vault.errors import VeladorError
from vault.netrecover import case_ref
from vault.switch import fan_out

from ..i18n import _
from .app import Ui, form, new_job_id, see_other
from .common import current, error_line, gate, job_progress

PAGE, MAX_PAGES = 100, 50  # as `velador inbox`


def _inbox(ui: Ui, ident: Any) -> dict[str, Any]:
    from ..context import default_home
    from ..inbox_view import Names, describe, group, home_args

    nodes = [(a, c) for a, c in ui.state.contacts() if c.role == "node"]
    me = ident.card.fingerprint

    def fetch(client: Any) -> dict[str, Any]:
        last, mine = 0, []
        for _i in range(MAX_PAGES):
            page = client.inbox(after=last, limit=PAGE)
            for item in page:
                last = max(last, int(item["id"]))
                if item["notice"].get("party") == me:
                    mine.append(item["notice"])
            if len(page) < PAGE:
                break
        return {"notices": mine}

    answers = fan_out([c for _a, c in nodes], ident, ui.config.clock, fetch, ui.config.timeout)
    rows = [
        {"node_alias": alias, **n}
        for (alias, _c), a in zip(nodes, answers, strict=True)
        for n in (a.body or {}).get("notices", [])
    ]
    names = Names(
        ui.state.contacts(),
        {r.case_id: r.name for r in ui.state.cases()},
        home_args(ui.home, default_home()),
    )
    events = []
    for ev in reversed(group(rows)):  # newest first
        line, next_cmd = describe(ev, names)
        events.append({"time": ev.time, "event": ev.event, "line": line, "next": next_cmd})
    return {
        "time": ui.config.clock.now(),
        "events": events,
        "asked": len(answers),
        "unreachable": [alias for (alias, _c), a in zip(nodes, answers, strict=True) if not a.ok],
    }


def _recover(ui: Ui, job: dict[str, Any], ident: Any, text: str, out: Path) -> None:
    """`velador recover CASE_CARD --out DIR`, step for step, in a thread."""
    from vault.keyrings import older_keys
    from vault.netrecover import combine_released, gather, node_summary
    from vault.recover import restore
    from vault.shares import age_identity_str
    from vault.state import LocalState
    from vault.stores import open_store

    def progress(done: int, total: int) -> None:
        job["done"], job["total"] = done, total

    try:
        state = LocalState(ui.home)  # this thread's own database connection
        contacts = [card for _a, card in state.contacts()]
        ref = case_ref(
            text,
            [c for c in contacts if c.role == "node"],
            [c for c in contacts if c.role == "reporter"],
        )
        found = gather(ref, ident, ui.config.clock, timeout=ui.config.timeout)
        secret = combine_released(found, ident)
        policy = found.policy
        assert policy is not None
        agreeing, serving = found.serving()
        found.report.policy_choice = {
            "by": found.chosen_by,
            "agreeing": agreeing,
            "serving": serving,
        }
        urls = list(policy.stores)
        older = older_keys(
            policy,
            secret,
            [open_store(u, s3_endpoint=ui.config.s3_endpoint) for u in urls],
            ident.box_key,
            found.report.chain_problems,
        )
        urls += [u for old, _s in older for u in old.stores if u not in urls]
        keys = [age_identity_str(s) for s in [secret, *(s for _o, s in older)]]
        del secret, older
        rep = restore(
            policy,
            keys,
            urls,
            out,
            s3_endpoint=ui.config.s3_endpoint,
            progress=progress,
            report=found.report,
        )
        del keys
        snaps = rep.snapshots
        job["result"] = {
            "files": rep.files,
            "bytes": rep.bytes,
            "out": rep.out or str(out),
            "instructions": rep.instructions,
            "reporter": policy.reporter.name,
            "fingerprint": policy.reporter.fingerprint,
            "contact": state.alias_of(policy.reporter),
            "majority": (rep.policy_choice or {}).get("by") == "majority",
            "snapshots": len(snaps),
            "first": snaps[0]["created"] if snaps else None,
            "last": snaps[-1]["created"] if snaps else None,
            "chain_intact": rep.chain_intact,
            "problems": [*rep.chain_problems, *rep.store_problems],
            "shares_used": len(rep.shares_used),
            "nodes": [(n["node"], n["outcome"]) for n in node_summary(found)],
            "case_id": policy.case_id,
        }
        job["state"] = "done"
    except VeladorError as exc:
        job["error"] = error_line(exc)
        job["state"] = "failed"
    except OSError as exc:
        job["error"] = str(exc.strerror or exc)
        job["state"] = "failed"


def register(app: FastAPI, ui: Ui) -> None:
    @app.get("/outlet")
    def outlet_page(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        return ui.render(request, "outlet.html", inbox=current(request).data.get("inbox"))

    @app.post("/outlet/inbox")
    def outlet_inbox(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        sess = current(request)
        try:
            sess.data["inbox"] = _inbox(ui, sess.identity)
        except VeladorError as exc:
            sess.notice("error", error_line(exc))
        return see_other("/outlet")

    @app.post("/outlet/recover")
    async def outlet_recover(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        data = await form(request)
        sess = current(request)
        text = data.get("case", "").strip()
        raw = data.get("out", "").strip()
        if not text or not raw:
            sess.notice("error", _("Paste the case card and write the folder to recover into."))
            return see_other("/outlet")
        out = Path(raw).expanduser()
        job_id = new_job_id()
        job: dict[str, Any] = {
            "kind": "recover",
            "case": text[:24],
            "path": str(out),
            "done": 0,
            "total": 0,
            "state": "running",
            "result": None,
            "error": None,
        }
        ui.jobs[job_id] = job
        threading.Thread(
            target=_recover, args=(ui, job, sess.identity, text, out), daemon=True
        ).start()
        return see_other(f"/outlet/jobs/{job_id}")

    @app.get("/outlet/jobs/{job_id}")
    def recover_page(request: Request, job_id: str) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        job = ui.jobs.get(job_id)
        if job is None or job.get("kind") != "recover":
            return see_other("/outlet")
        return ui.render(request, "recovered.html", job=job, job_id=job_id)

    @app.get("/outlet/jobs/{job_id}/progress")
    def recover_progress(request: Request, job_id: str) -> Response:
        return job_progress(ui, request, job_id)
