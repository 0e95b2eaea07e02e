"""`velador agent`: reminders before deadlines and re-sending of queued check-ins.

A small APScheduler 3.x process on the reporter's laptop. Each round (every `--interval` seconds)
it:

1. re-sends every queued check-in with a transport ticket valid now (vault/switch.py
   `resend_queued`): the heartbeat was signed by the reporter at `velador checkin`; the agent
   never unlocks the identity and cannot sign anything, so it can never check in on its own;
2. reminds the reporter of each case's next deadline, once per reminder offset of the policy
   (and once more when the deadline has passed), as a line on the terminal and, where
   `notify-send` exists, a desktop notification. Deadlines come from the last signed answers
   the nodes gave (`node_views`), so reminders need no network and no passphrase.

Time comes from the injected clock (Ctx.clock), never from the system directly, so tests move
through days with `--once`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import click

from vault.checkin import resend_queued
from vault.clock import Clock, iso
from vault.durations import human
from vault.state import LocalState
from vault.switch import DEFAULT_TIMEOUT, arming_state

from .context import Ctx, emit_json

DEFAULT_REMIND = (86400, 3600)
"""Offsets used when the policy sets none: a day and an hour before the deadline."""


@dataclass
class Round:
    time: int
    resent: list[dict[str, Any]] = field(default_factory=list)
    reminders: list[dict[str, Any]] = field(default_factory=list)


def due_reminders(state: LocalState, clock: Clock) -> list[dict[str, Any]]:
    """Reminders to give now (each given once: recorded in the `reminders` table)."""
    now = clock.now()
    out = []
    for rec in state.cases():
        if arming_state(state, rec) not in ("armed", "arming"):
            continue
        sw = rec.policy.switch
        assert sw is not None
        views = [v for v in state.node_views(rec.case_id) if v["deadline"]]
        if not views or any(v["state"] in ("RELEASED", "DESTROYED") for v in views):
            continue
        deadline = min(v["deadline"] for v in views)
        release_at = min((v["release_at"] for v in views if v["release_at"]), default=None)
        offsets = [o for o in (sw.remind or DEFAULT_REMIND) if 0 < o < sw.every]
        due = [o for o in offsets if now >= deadline - o] + ([0] if now >= deadline else [])
        if not due:
            continue
        offset = min(due)  # only the most urgent of the reminders due now
        if not state.remind_once(rec.case_id, deadline, offset, now):
            continue
        if offset == 0:
            text = (
                f"{rec.name}: your check-in deadline has PASSED; the nodes release at "
                f"{iso(release_at) if release_at else '?'} unless you run 'velador checkin'"
            )
        else:
            text = (
                f"{rec.name}: check in within {human(deadline - now)} "
                f"(deadline {iso(deadline)}): run 'velador checkin'"
            )
        out.append({"case": rec.name, "deadline": deadline, "offset": offset, "text": text})
    return out


def desktop_notify(text: str) -> bool:
    exe = shutil.which("notify-send")
    if exe is None:
        return False
    try:
        # A fixed executable and the text as one argument: no shell is involved.
        subprocess.run([exe, "--app-name=velador", "Velador", text], timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def run_round(ctx: Ctx, timeout: float, notify: bool) -> Round:
    rnd = Round(ctx.clock.now())
    for r in resend_queued(ctx.state, ctx.clock, timeout):
        item = {"case_id": r.case_id, "node": r.node, "seq": r.seq, "outcome": r.outcome}
        if r.detail:
            item["detail"] = r.detail
        rnd.resent.append(item)
    rnd.reminders = due_reminders(ctx.state, ctx.clock)
    return rnd


def show(rnd: Round, notify: bool) -> None:
    for r in rnd.resent:
        if r["outcome"] == "waiting":
            continue
        click.echo(
            f"{iso(rnd.time)} queued check-in #{r['seq']} to {r['node']}: {r['outcome']}"
            + (f" ({r['detail']})" if r.get("detail") else ""),
            err=True,
        )
    for rem in rnd.reminders:
        click.echo(f"{iso(rnd.time)} reminder: {rem['text']}", err=True)
        if notify:
            # Not the reminder text: a notification's text is in notify-send's argv (readable by
            # every local user in /proc) and in the desktop's history, so no case name goes there.
            desktop_notify("A check-in is due soon: run 'velador status', then 'velador checkin'.")


@click.command("agent")
@click.option("--once", is_flag=True, help="Run one round (re-send, remind) and exit.")
@click.option(
    "--interval",
    type=click.FloatRange(1, 86400),
    default=60.0,
    show_default=True,
    help="Seconds between rounds.",
)
@click.option(
    "--notify/--no-notify",
    default=True,
    show_default=True,
    help="Also show reminders as desktop notifications (notify-send) where available.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.5, 600),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each node.",
)
@click.option("--json", "as_json", is_flag=True, help="With --once: print the round as JSON.")
@click.pass_obj
def agent(
    ctx: Ctx, once: bool, interval: float, notify: bool, timeout: float, as_json: bool
) -> None:
    """Remind you before deadlines and re-send queued check-ins. Never checks in by itself.

    Needs no passphrase: queued check-ins were signed when you ran 'velador checkin'."""
    if once:
        rnd = run_round(ctx, timeout, notify)
        if as_json:
            emit_json({"time": rnd.time, "resent": rnd.resent, "reminders": rnd.reminders})
        else:
            show(rnd, notify)
        return
    import signal
    import threading

    from apscheduler.schedulers.blocking import BlockingScheduler

    sched = BlockingScheduler()
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        # Ctrl-C or SIGTERM at any moment (even during a round) ends the agent cleanly, exit 0.
        stopping.set()
        if sched.running:
            sched.shutdown(wait=False)

    def job() -> None:
        if not stopping.is_set():
            show(run_round(ctx, timeout, notify), notify)

    old_int = signal.signal(signal.SIGINT, stop)
    old_term = signal.signal(signal.SIGTERM, stop)
    try:
        sched.add_job(job, "interval", seconds=interval, max_instances=1, coalesce=True)
        click.echo(
            f"velador agent: every {human(int(interval))}; Ctrl-C to stop. "
            "It never checks in for you.",
            err=True,
        )
        job()
        if not stopping.is_set():
            sched.start()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
