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

3. once unlocked (`velador agent unlock`), deposits the folders each case watches
   (`velador case watch`) when they change and on a schedule (cli/agent_runtime.py).

Time comes from the injected clock (Ctx.clock, or a test's clock file), never from the system
directly, so tests move through days with `--once` or with the long-running process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from vault.checkin import resend_queued
from vault.clock import Clock, iso
from vault.durations import human, parse_duration
from vault.errors import N_, AuthenticationError, PolicyError
from vault.state import LocalState
from vault.switch import DEFAULT_TIMEOUT, arming_state

from .context import PASSPHRASE_ENV, Ctx, emit_json, get_passphrase
from .i18n import _
from .timefmt import local_time, span

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
        # `text` is for --json (English, UTC); the terminal line is reminder_text's.
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
        out.append(
            {
                "case": rec.name,
                "deadline": deadline,
                "release_at": release_at,
                "offset": offset,
                "text": text,
            }
        )
    return out


def reminder_text(rem: dict[str, Any], now: int) -> str:
    """A reminder as the reporter reads it: her language, her local time."""
    if rem["offset"] == 0:
        release_at = rem.get("release_at")
        return _(
            "%(case)s: your check-in deadline has PASSED; the nodes release at %(release_at)s "
            "unless you run 'velador checkin'"
        ) % {
            "case": rem["case"],
            "release_at": local_time(release_at, now) if release_at else "?",
        }
    return _(
        "%(case)s: check in within %(left)s (deadline %(deadline)s): run 'velador checkin'"
    ) % {
        "case": rem["case"],
        "left": span(rem["deadline"] - now),
        "deadline": local_time(rem["deadline"], now),
    }


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


def run_round(state: LocalState, clock: Clock, timeout: float) -> Round:
    """One round: re-send queued check-ins, then the reminders due. `state` must have been
    opened in the calling thread (vault/state.py)."""
    rnd = Round(clock.now())
    for r in resend_queued(state, clock, timeout):
        item = {"case_id": r.case_id, "node": r.node, "seq": r.seq, "outcome": r.outcome}
        if r.detail:
            item["detail"] = r.detail
        rnd.resent.append(item)
    rnd.reminders = due_reminders(state, clock)
    return rnd


RESENT = {
    "delivered": N_("delivered"),
    "superseded": N_("superseded"),
    "retry": N_("retry"),
    "refused": N_("refused"),
}
"""Outcomes of re-sending a queued check-in (vault/checkin.py), as the terminal line says them."""


def show(rnd: Round, notify: bool) -> None:
    when = local_time(rnd.time, rnd.time)
    for r in rnd.resent:
        if r["outcome"] == "waiting":
            continue
        values = {
            "when": when,
            "seq": r["seq"],
            "node": r["node"],
            "outcome": _(RESENT[r["outcome"]]) if r["outcome"] in RESENT else r["outcome"],
            "detail": r.get("detail"),
        }
        text = (
            _("%(when)s queued check-in #%(seq)s to %(node)s: %(outcome)s (%(detail)s)")
            if r.get("detail")
            else _("%(when)s queued check-in #%(seq)s to %(node)s: %(outcome)s")
        )
        click.echo(text % values, err=True)
    for rem in rnd.reminders:
        click.echo(
            _("%(when)s reminder: %(text)s") % {"when": when, "text": reminder_text(rem, rnd.time)},
            err=True,
        )
        if notify:
            # Not the reminder text: a notification's text is in notify-send's argv (readable by
            # every local user in /proc) and in the desktop's history, so no case name goes there.
            desktop_notify(
                _("A check-in is due soon: run 'velador status', then 'velador checkin'.")
            )


TEST_CLOCK_ENV = "VELADOR_AGENT_TEST_CLOCK"
"""TEST-ONLY: with this set to 1, the hidden --test-clock-file option is accepted (as for nodes,
escrow_node/testclock.py): the agent reads the time from a file a test writes."""


def _test_clock(path: Path | None) -> Clock | None:
    if path is None:
        return None
    if os.environ.get(TEST_CLOCK_ENV) != "1":
        raise PolicyError(
            N_("--test-clock-file is for tests only (set %(variable)s=1)"), variable=TEST_CLOCK_ENV
        )
    from escrow_node.testclock import FileClock

    click.echo(_("velador agent: WARNING: test clock from %(path)s") % {"path": path}, err=True)
    return FileClock(path)


def _duration(text: str, what: str) -> int:
    return parse_duration(text, what)


@click.group(
    "agent",
    invoke_without_command=True,
    help=N_(
        "Remind you before deadlines, re-send queued check-ins, deposit watched folders.\n\n"
        "It never checks in by itself. Reminders and queued check-ins need no passphrase (a "
        "queued check-in was signed when you ran 'velador checkin'). Deposits of the folders "
        "named with 'velador case watch' need the key: 'velador agent unlock' (or --unlock) "
        "hands it to the running agent, which keeps it in memory only and forgets it after "
        "--lock-after idle, when the computer sleeps, or on 'velador agent lock'."
    ),
)
@click.option("--once", is_flag=True, help=N_("Run one round (re-send, remind) and exit."))
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 86400),
    default=60.0,
    show_default=True,
    help=N_("Seconds between rounds."),
)
@click.option(
    "--notify/--no-notify",
    default=True,
    show_default=True,
    help=N_("Also show reminders as desktop notifications (notify-send) where available."),
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.5, 600),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help=N_("Seconds to wait for each node."),
)
@click.option(
    "--unlock",
    "unlock_now",
    is_flag=True,
    help=N_("Ask for the passphrase now, so watched folders are deposited from the start."),
)
@click.option(
    "--debounce",
    type=click.FloatRange(0.1, 86400),
    default=30.0,
    show_default=True,
    help=N_("Seconds a watched folder must stay unchanged before it is deposited."),
)
@click.option(
    "--deposit-every",
    default="6h",
    show_default=True,
    help=N_("Deposit every watched folder at least this often, changed or not."),
)
@click.option(
    "--lock-after",
    default="2h",
    show_default=True,
    help=N_("Forget the key after this long with no unlock and no change in a watched folder."),
)
@click.option(
    "--suspend-jump",
    default="2m",
    show_default=True,
    help=N_("Forget the key when the clock jumps this much between rounds (the computer slept)."),
)
@click.option("--json", "as_json", is_flag=True, help=N_("With --once: print the round as JSON."))
@click.option(
    "--test-clock-file",
    type=click.Path(path_type=Path, dir_okay=False),
    hidden=True,
    help="TEST-ONLY: read the time from this file (needs VELADOR_AGENT_TEST_CLOCK=1).",  # hidden
)
@click.pass_context
def agent(
    cctx: click.Context,
    once: bool,
    interval: float,
    notify: bool,
    timeout: float,
    unlock_now: bool,
    debounce: float,
    deposit_every: str,
    lock_after: str,
    suspend_jump: str,
    as_json: bool,
    test_clock_file: Path | None,
) -> None:
    """`velador agent` (help text above)."""
    if cctx.invoked_subcommand is not None:
        return
    ctx: Ctx = cctx.obj
    clock = _test_clock(test_clock_file) or ctx.clock
    if once:
        rnd = run_round(ctx.state, clock, timeout)
        if as_json:
            emit_json({"time": rnd.time, "resent": rnd.resent, "reminders": rnd.reminders})
        else:
            show(rnd, notify)
        return
    from .agent_keys import harden_process
    from .agent_runtime import Agent, AgentOptions

    harden_process()  # before the key is in memory

    opts = AgentOptions(
        interval=interval,
        notify=notify,
        timeout=timeout,
        debounce=debounce,
        deposit_every=_duration(deposit_every, "--deposit-every"),
        lock_after=_duration(lock_after, "--lock-after"),
        suspend_jump=_duration(suspend_jump, "--suspend-jump"),
        test_rounds=test_clock_file is not None,
    )
    identity = None
    if unlock_now:
        identity = ctx.unlock()
        os.environ.pop(PASSPHRASE_ENV, None)  # not inherited by anything the agent starts
    Agent(ctx.home, clock, opts).run(identity)


@agent.command("lock", help=N_("Make the running agent forget the key now (it keeps reminding)."))
@click.pass_obj
def agent_lock(ctx: Ctx) -> None:
    from .agent_control import request

    request(ctx.home, {"op": "lock"})
    click.echo(_("The agent is locked: it no longer holds your key."), err=True)


@agent.command(
    "unlock", help=N_("Hand the key to the running agent so it deposits watched folders.")
)
@click.pass_obj
def agent_unlock(ctx: Ctx) -> None:
    from .agent_control import request

    answer = request(ctx.home, {"op": "ping"}, timeout=5.0)  # before asking for the passphrase
    answer = request(ctx.home, {"op": "unlock", "passphrase": get_passphrase(_("Passphrase"))})
    if not answer.get("ok"):
        # The agent sends the English text and, where it has them, the templates and values,
        # so the message is shown in the reader's language (agent_runtime.Agent.control).
        raise AuthenticationError(
            str(
                answer.get("template")
                or answer.get("error")
                or N_("the agent refused the passphrase")
            ),
            hint=answer.get("hint_template") or answer.get("hint"),
            **(answer.get("params") or {}),
        )
    click.echo(_("The agent is unlocked: it deposits your watched folders."), err=True)


@agent.command("status", help=N_("Say whether the running agent holds the key, and until when."))
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def agent_status(ctx: Ctx, as_json: bool) -> None:
    from .agent_control import request

    answer = request(ctx.home, {"op": "status"}, timeout=10.0)
    if as_json:
        emit_json(answer)
        return
    if answer.get("locked"):
        click.echo(_("The agent is running and locked: it reminds, but does not deposit."))
    else:
        lock_at = answer.get("lock_at")
        if lock_at:
            click.echo(
                _(
                    "The agent is running and unlocked: it deposits watched folders. It locks "
                    "again at %(when)s if idle."
                )
                % {"when": local_time(int(lock_at), ctx.clock.now())}
            )
        else:
            click.echo(_("The agent is running and unlocked: it deposits watched folders."))
    if answer.get("depositing"):
        click.echo(_("A deposit is under way."))
