"""The outlet's pages: the inbox (one line per event) and recovery into a chosen folder.

The inbox is `velador inbox`'s: the same fetch and "seen" cursor per node (vault/inbox.py), and
the same grouping and words (cli/inbox_view.py). "Check the inbox now" shows the new notices and
marks them seen, so the terminal's next `velador inbox` does not show them as new (and the
other way round); "Show all" is `velador inbox --all` and marks nothing. Recovery makes the
calls `velador recover CASE_CARD --out DIR` makes (vault/netrecover.py released_secret,
vault/keyrings.py case_keys, vault/recover.py restore), in a thread with a progress bar, and
then shows the reporter's instructions and the provenance summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from vault.errors import VeladorError

from ..i18n import _
from .app import Ui, form, see_other
from .common import Progress, current, error_line, gate, job_progress, new_job, start_job


def _inbox(ui: Ui, ident: Any, show_all: bool) -> dict[str, Any]:
    """The inbox page's events, newest first; the new ones are marked seen once read here."""
    from vault.inbox import fetch_inbox, inbox_nodes, mark_seen

    from ..context import default_home
    from ..inbox_view import Names, describe, group, home_args

    state, clock = ui.state, ui.config.clock
    fetched = fetch_inbox(
        state, inbox_nodes(state), ident, clock, ui.config.timeout, show_all=show_all
    )
    names = Names(
        state.contacts(),
        {r.case_id: r.name for r in state.cases()},
        home_args(ui.home, default_home()),
    )
    now = clock.now()
    events = []
    for ev in reversed(group(fetched.rows)):  # newest first
        line, next_cmd = describe(ev, names, now)
        events.append({"time": ev.time, "event": ev.event, "line": line, "next": next_cmd})
    # The page is rendered from the session right after this, as the CLI prints before it marks.
    mark_seen(state, fetched, clock.now())
    return {
        "time": now,
        "events": events,
        "all": show_all,
        "asked": len(fetched.answers),
        "unreachable": [alias for alias, _a in fetched.failed],
    }


def _recover(ui: Ui, ident: Any, text: str, out: Path, progress: Progress) -> dict[str, Any]:
    """`velador recover CASE_CARD --out DIR`, the same vault calls, in a job's thread."""
    from vault.keyrings import case_keys
    from vault.netrecover import contacts_ref, node_summary, released_secret
    from vault.recover import restore
    from vault.state import LocalState

    state = LocalState(ui.home)  # this thread's own database connection
    ref = contacts_ref(text, [card for _a, card in state.contacts()])
    found, secret, _skipped = released_secret(
        ref, ident, ui.config.clock, timeout=ui.config.timeout
    )
    policy = found.policy
    assert policy is not None
    keys = case_keys(
        policy,
        secret,
        ident.box_key,
        found.report.chain_problems,
        s3_endpoint=ui.config.s3_endpoint,
    )
    del secret
    rep = restore(
        policy,
        keys.identities(),
        keys.urls,
        out,
        s3_endpoint=ui.config.s3_endpoint,
        progress=progress,
        report=found.report,
    )
    del keys
    snaps = rep.snapshots
    return {
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


def register(app: FastAPI, ui: Ui) -> None:
    @app.get("/outlet")
    def outlet_page(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        return ui.render(request, "outlet.html", inbox=current(request).data.get("inbox"))

    @app.post("/outlet/inbox")
    async def outlet_inbox(request: Request) -> Response:
        if (refused := gate(ui, request)) is not None:
            return refused
        data = await form(request)
        sess = current(request)
        try:
            # In a worker thread, as the synchronous routes run: the nodes may take a while.
            sess.data["inbox"] = await run_in_threadpool(
                _inbox, ui, sess.identity, data.get("all") == "yes"
            )
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
        job = new_job(ui, "recover", text[:24], path=str(out))
        ident = sess.identity
        start_job(job, lambda progress: _recover(ui, ident, text, out, progress))
        return see_other(f"/outlet/jobs/{job['id']}")

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
