"""`velador checkin`, `status`, `pause`, `resume`, `release now|object`, `audit`: the switch.

Thin over vault/switch.py. Every command that talks to nodes prints one table row per node (or
`--json`) and then, when some node did not do what was asked, exits through one VeladorError that
says how many did and what the others answered, so scripts see a non-zero exit code.

The `release` group is shared: cli/outlet_cmds.py attaches the editor's `release request` to it
(`from cli.switch_cmds import release`).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from vault.checkin import checkin
from vault.custody import audit
from vault.durations import parse_when
from vault.errors import N_, NodeError, PolicyError, VeladorError
from vault.released import known_release
from vault.switch import DEFAULT_TIMEOUT, NodeResult, act, gather_status

from .context import Ctx, emit_json, out_console
from .context import table as wrapping_table
from .i18n import _, error_text, ngettext, note_text
from .release_view import NOT_REPORTER, print_release, release_json, state_word, switch_label
from .timefmt import local_time, when

TIMEOUT_HELP = N_("Seconds to wait for each node.")


def timeout_option(f: Any) -> Any:
    return click.option(
        "--timeout",
        type=click.FloatRange(0.5, 600),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help=TIMEOUT_HELP,
    )(f)


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))(f)


def result_text(r: NodeResult) -> str:
    if r.ok:
        return _("ok")
    assert r.error is not None
    if r.queued:
        return _("queued: %(detail)s") % {"detail": short(r)}
    return _("failed: %(detail)s") % {"detail": short(r)}


def node_table(title: str | None, results: list[NodeResult], now: int) -> Any:
    table = wrapping_table(
        _("node"), _("result"), _("state"), _("next deadline"), title=title, title_justify="left"
    )
    for r in results:
        body = r.body or {}
        deadline = body.get("deadline")
        if not deadline and body.get("state") == "PAUSED":
            deadline = body.get("paused_until")
        table.add_row(r.node, result_text(r), state_word(body.get("state")), when(deadline, now))
    return table


def short(r: NodeResult) -> str:
    """The node's error in the reader's language, without the 'node NAME: ' prefix the client
    adds (the table names the node already)."""
    if r.error is None:
        return "?"
    msg = error_text(r.error)[0]
    prefix = f"node {r.node}: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg


ACTIONS = {
    "pause": (N_("%(case)s: pause"), N_("pause reached %(done)d of %(total)d nodes (%(detail)s)")),
    "resume": (
        N_("%(case)s: resume"),
        N_("resume reached %(done)d of %(total)d nodes (%(detail)s)"),
    ),
    "release now": (
        N_("%(case)s: release now"),
        N_("release now reached %(done)d of %(total)d nodes (%(detail)s)"),
    ),
    "objection": (
        N_("%(case)s: objection"),
        N_("objection reached %(done)d of %(total)d nodes (%(detail)s)"),
    ),
    "destroy": (
        N_("%(case)s: destroy"),
        N_("destroy reached %(done)d of %(total)d nodes (%(detail)s)"),
    ),
}
"""A reporter's action at the nodes -> (its table title, the error when some node did not do
it): whole sentences, one per action."""


def action_title(action: str, case: str) -> str:
    return _(ACTIONS[action][0]) % {"case": case}


def require_all(action: str, results: list[NodeResult], case: str) -> None:
    """Raise one error naming every node that did not do `action` (a key of ACTIONS).

    CLI-only: the node details are already in the reader's language."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    done = len(results) - len(failed)
    detail = "; ".join(f"{r.node}: {short(r)}" for r in failed)
    err = NodeError if all(r.unreachable for r in failed) else PolicyError
    raise err(
        ACTIONS[action][1],
        hint=N_("run the same command again; 'velador status %(case)s' shows each node's state"),
        done=done,
        total=len(results),
        detail=detail,
        case=case,
    )


def show_coverage_warnings(lines: list[str]) -> None:
    """The coverage warnings of vault.switch.coverage_warnings (a rotation not finished, nodes
    without the case), on stderr where they cannot scroll past unseen in a table."""
    for line in lines:
        click.secho(_("WARNING: %(line)s") % {"line": line}, err=True, fg="yellow", bold=True)


# --- checkin ----------------------------------------------------------------------------------


@click.command(
    "checkin",
    help=N_(
        "Check in: one signed heartbeat for every armed case (or the CASES named), "
        "to every node.\n\n"
        "Nodes you cannot reach get the signed heartbeat queued; 'velador agent' "
        "re-sends it."
    ),
)
@click.argument("cases", nargs=-1)
@timeout_option
@json_option
@click.pass_obj
def checkin_cmd(ctx: Ctx, cases: tuple[str, ...], timeout: float, as_json: bool) -> None:
    from vault.switch import closed_unconfirmed, switch_cases

    ident = ctx.unlock()
    # Under the normal passphrase a case closed on this laptop that no node confirmed closed
    # (a release or destroy forced under duress) is still checked in; under duress the cover
    # holds: such a case is skipped, as after a real release (vault.switch.closed_unconfirmed).
    revive = not ident.duress
    closed = [r for r in _released_cases(ctx, cases) if not (revive and closed_unconfirmed(r))]
    still = [c for c in cases if c not in {r.name for r in closed} | {r.case_id for r in closed}]
    recs = switch_cases(ctx.state, still, revive=revive) if still or not cases else []
    if closed and not recs:
        now = ctx.clock.now()
        if as_json:
            emit_json({"time": now, "cases": [], "released": _released_json(closed)})
        else:
            for rec in closed:
                print_release(out_console(), rec.name, known_release(rec), now)
        raise _checkin_refused(closed)
    if not recs:
        raise PolicyError(
            N_("no armed case to check in"),
            hint=N_("create one with 'velador case create NAME --node ALIAS ...'"),
        )
    done = checkin(ctx.state, ident, ctx.clock, recs, timeout)
    now = ctx.clock.now()
    if as_json:
        emit_json({"time": now, "cases": [c.to_json() for c in done]})
    else:
        _print_checkins(done, closed, now)
    released = [c for c in done if c.release is not None and c.release.complete]
    if released or (closed and cases):
        # A case named on the command line, or found released now, was not checked in: say so
        # with a non-zero exit code (the other cases were checked in above).
        raise _checkin_refused([*closed, *(ctx.state.case(c.case_id) for c in released)])
    unreached = [
        c for c in done if c.reached == 0 and (c.release is None or not c.release.complete)
    ]
    if unreached:
        names = ", ".join(c.case for c in unreached)
        raise NodeError(
            N_("no node of %(cases)s could be reached; the check-in is queued"),
            hint=N_("check your connection; 'velador agent' re-sends queued check-ins"),
            cases=names,
        )


def _print_checkins(done: list[Any], closed: list[Any], now: int) -> None:
    """One table per case, titled with the check-in's local time (its sequence number is a
    timestamp-sized counter nobody should have to read), then deadlines, queues, releases."""
    con = out_console()
    for c in done:
        print_release(con, c.case, c.release, now)
        title = _("%(case)s: check-in of %(time)s") % {
            "case": c.case,
            "time": local_time(now, now),
        }
        con.print(node_table(title, c.results, now))
    for c in done:
        if c.release is not None and c.release.complete:
            continue
        queued = [r.node for r in c.results if r.queued]
        if c.next_deadline:
            click.echo(
                _("%(case)s: next deadline %(when)s")
                % {"case": c.case, "when": when(c.next_deadline, now)},
                err=True,
            )
        if queued:
            click.echo(
                _(
                    "%(case)s: queued for %(nodes)s; 'velador agent' re-sends it, "
                    "and the nodes you reached pass it on"
                )
                % {"case": c.case, "nodes": ", ".join(queued)},
                err=True,
            )
        show_coverage_warnings(c.warnings)
    for rec in closed:
        info = known_release(rec)
        if info and info.released_at:
            line = _(
                "%(case)s: not checked in, the case was released on %(when)s "
                "(see 'velador status %(case)s')"
            )
        else:
            line = _(
                "%(case)s: not checked in, the case was released earlier "
                "(see 'velador status %(case)s')"
            )
        when_text = when(info.released_at, now) if info and info.released_at else ""
        click.echo(line % {"case": rec.name, "when": when_text}, err=True)


def _released_cases(ctx: Ctx, names: tuple[str, ...]) -> list[Any]:
    """The cases (named, or all) this laptop knows were released: a check-in skips them."""
    recs = [ctx.state.case(n) for n in names] if names else ctx.state.cases()
    return [r for r in recs if r.status == "released"]


def _released_json(recs: list[Any]) -> list[dict[str, Any]]:
    return [{"case": r.name, "release": release_json(known_release(r))} for r in recs]


def _checkin_refused(recs: list[Any]) -> PolicyError:
    unique = list(dict.fromkeys(r.name for r in recs))
    hint = N_("'velador status %(first)s' shows when and by which rule")
    if len(unique) == 1:
        return PolicyError(
            N_("case %(cases)s was released; checking in no longer changes anything"),
            hint=hint,
            cases=unique[0],
            first=unique[0],
        )
    return PolicyError(
        N_("cases %(cases)s were released; checking in no longer changes anything"),
        hint=hint,
        cases=", ".join(unique),
        first=unique[0],
    )


# --- status -----------------------------------------------------------------------------------


def status_rows(st: Any, now: int) -> Any:
    table = wrapping_table(
        _("node"),
        _("state"),
        _("last check-in"),
        _("next deadline"),
        _("releases at"),
        _("editors"),
        title=_("%(case)s (%(case_id)s): %(label)s")
        % {"case": st.case, "case_id": st.case_id, "label": switch_label(st.release, st.local)},
        title_justify="left",
    )
    for r in st.results:
        if not r.ok or r.body is None:
            word = _("unreachable") if r.unreachable else _("error")
            table.add_row(r.node, word, "-", "-", "-", "-")
            continue
        b = r.body
        editors = "-"
        if b.get("editor_quorum"):
            editors = f"{b.get('editor_requests', 0)}/{b['editor_quorum']}"
        deadline = b.get("deadline") or (
            b.get("paused_until") if b.get("state") == "PAUSED" else None
        )
        table.add_row(
            r.node,
            state_word(b.get("state")),
            when(b.get("last_beat"), now),
            when(deadline, now),
            _release_cell(b, now),
            editors,
        )
    return table


def _release_cell(b: dict[str, Any], now: int) -> str:
    if b.get("state") == "RELEASED" and b.get("released_at"):
        return _("released %(when)s") % {"when": when(b["released_at"], now)}
    return when(b.get("release_at"), now)


@click.command(
    "status",
    help=N_(
        "Each node's view of CASE (or of every case with nodes): state, last "
        "check-in, deadline.\n\n"
        "Nodes that disagree (state, check-in number, deadline, policy version) are "
        "flagged. The passphrase is asked only to contact the nodes: with "
        "--offline, or when you press Enter at the prompt, you see their last "
        "answers kept on this laptop."
    ),
)
@click.argument("case", required=False)
@click.option(
    "--offline",
    is_flag=True,
    help=N_("Show what the nodes last said, kept on this laptop: no network, no passphrase."),
)
@timeout_option
@json_option
@click.pass_obj
def status_cmd(ctx: Ctx, case: str | None, offline: bool, timeout: float, as_json: bool) -> None:
    from vault.switch import arming_state

    from .status_local import show_local, unlock_to_ask
    from .watch_cmds import freshness_lines

    if case and not ctx.state.has_case(case):
        _refuse_typo(ctx, case)
        _remote_status(ctx, case, timeout, as_json)
        return
    if case:
        recs = [ctx.state.case(case)]
    else:
        recs = [r for r in ctx.state.cases() if arming_state(ctx.state, r) != "offline"]
        if not recs:
            raise PolicyError(
                N_("no case has escrow nodes"),
                hint=N_("see 'velador case create --help' (--node)"),
            )
    ident = unlock_to_ask(ctx, offline)
    if ident is None:
        show_local(ctx, recs, as_json)
        return
    stats = [gather_status(ctx.state, ident, ctx.clock, r, timeout) for r in recs]
    now = ctx.clock.now()
    if as_json:
        emit_json({"time": now, "cases": [s.to_json() for s in stats]})
        return
    con = out_console()
    for s in stats:
        print_release(con, s.case, s.release, now)
        con.print(status_rows(s, now))
        if pending := _pending_release(s.results):
            asked, until = pending
            con.print(
                _(
                    "%(case)s: editor release pending (%(asked)s); you can object until "
                    "%(when)s with 'velador release object %(case)s'"
                )
                % {"case": s.case, "asked": asked, "when": when(until, now)}
            )
        for line in s.disagreements:
            con.print(_("warning: %(line)s") % {"line": line})
        show_coverage_warnings(s.warnings)
        for line in freshness_lines(ctx.state, ctx.state.case(s.case), now, ident):
            con.print(line, markup=False)
        from .drill_cmds import status_lines  # issue 13: the newest drill's verdict

        for line in status_lines(ctx, ctx.state.case(s.case), ident, timeout):
            con.print(line, markup=False)


def _refuse_typo(ctx: Ctx, text: str) -> None:
    """A word that is neither a case card nor a case id is a mistyped case name (issue 12 §8)."""
    import difflib

    from vault.netrecover import is_case_id
    from vault.switch import CASE_CARD_PREFIX

    text = text.strip()
    if text.startswith(CASE_CARD_PREFIX):
        return
    names = [r.name for r in ctx.state.cases()]
    if not is_case_id(text) or difflib.get_close_matches(text, names, n=1, cutoff=0.8):
        raise ctx.state.no_case(text)


def _pending_release(results: list[Any]) -> tuple[str, int] | None:
    """("N of M editors asked", earliest release time) when some node has an editor release
    pending, else None: the reporter's and the editors' views both say it."""
    pending = [r.body for r in results if r.ok and r.body and r.body.get("pending_until")]
    if not pending:
        return None
    b = pending[0]
    asked = _("%(n)s of %(quorum)s editors asked") % {
        "n": b.get("editor_requests"),
        "quorum": b.get("editor_quorum"),
    }
    return asked, min(p["pending_until"] for p in pending)


def _remote_status(ctx: Ctx, text: str, timeout: float, as_json: bool) -> None:
    """An editor's or recipient's view of a case they do not own (a case card or a case id).

    Nodes answer status requests from everyone the policy names, so an editor can follow the
    quorum count and the objection window after asking for a release."""
    from collections import Counter

    from vault.netrecover import contacts_ref
    from vault.switch import CaseStatus, foreign_status

    ref = contacts_ref(text, [card for _alias, card in ctx.state.contacts()])
    ident = ctx.unlock()
    results = foreign_status(ref, ident, ctx.clock, timeout)  # shared with the browser app
    hashes = Counter(r.body.get("policy_hash") for r in results if r.ok and r.body)
    pinned = ref.policy_hash or (hashes.most_common(1)[0][0] if hashes else "")
    st = CaseStatus("case", ref.case_id, NOT_REPORTER, str(pinned), results)
    now = ctx.clock.now()
    if as_json:
        emit_json({"time": now, "cases": [st.to_json()]})
        return
    con = out_console()
    con.print(status_rows(st, now))
    if pending := _pending_release(results):
        asked, until = pending
        con.print(
            _(
                "editor release pending (%(asked)s); the nodes release at %(when)s "
                "unless the reporter objects"
            )
            % {"asked": asked, "when": when(until, now)}
        )
    for line in st.disagreements:
        con.print(_("warning: %(line)s") % {"line": line})


# --- pause, resume, release, object -----------------------------------------------------------


def run_action(
    ctx: Ctx, case: str, action: str, label: str, timeout: float, as_json: bool, *args: Any
) -> None:
    rec = ctx.state.case(case)
    ident = ctx.unlock()
    results = act(ctx.state, ident, ctx.clock, rec, action, *args, timeout=timeout)
    now = ctx.clock.now()
    if as_json:
        emit_json(
            {
                "case": rec.name,
                "case_id": rec.case_id,
                "action": action,
                "nodes": [r.to_json() for r in results],
            }
        )
    else:
        out_console().print(node_table(action_title(label, rec.name), results, now))
    require_all(label, results, rec.name)


CONFIRM = {
    "release now": (
        N_("Really release %(case)s to your recipients now? This cannot be undone"),
        N_("refusing to release %(case)s to your recipients now without confirmation"),
    ),
    "destroy": (
        N_("Really destroy case %(case)s at every node? This cannot be undone"),
        N_("refusing to destroy case %(case)s at every node without confirmation"),
    ),
    "rotate": (
        N_("Really rotate the key of case %(case)s? This cannot be undone"),
        N_("refusing to rotate the key of case %(case)s without confirmation"),
    ),
}
"""What `confirm` asks, and says without a terminal, per action: whole sentences."""
YES = ("y", "yes", "s", "si", "sí")
NO = ("n", "no")


def confirm(action: str, case: str, yes: bool) -> None:
    """Ask before an action that cannot be undone. Answering no is a choice, not an error: a
    calm line and exit status 0 (issue 12 §9). "y" and, in Spanish, "s" mean yes."""
    if yes:
        return
    question, refusal = CONFIRM[action]
    if not sys.stdin.isatty():
        raise PolicyError(refusal, hint=N_("add --yes"), case=case)
    if not ask_yes_no(_(question) % {"case": case}):
        declined()


def ask_yes_no(question: str) -> bool:
    """A yes/no question at the terminal, default no, in the reader's language ([y/N], [s/N])."""
    choices = _("[y/N]")
    while True:
        answer = click.prompt(f"{question} {choices}", default="", show_default=False, err=True)
        word = str(answer).strip().lower()
        if word in YES:
            return True
        if word in NO or not word:
            return False
        click.echo(_("Please answer y or n."), err=True)


def declined() -> None:
    """The person answered no: say that nothing happened, and stop with exit status 0."""
    click.echo(_("Nothing was sent; nothing changed."), err=True)
    raise click.exceptions.Exit(0)


@click.command(
    "pause",
    help=N_(
        "Pause the switch of CASE until a date (planned surgery, travel without a connection)."
    ),
)
@click.argument("case")
@click.option(
    "--until",
    "until",
    required=True,
    help=N_(
        "When deadlines start again: YYYY-MM-DD, YYYY-MM-DDTHH:MM (your local time) or a "
        "duration (3d)."
    ),
)
@timeout_option
@json_option
@click.pass_obj
def pause_cmd(ctx: Ctx, case: str, until: str, timeout: float, as_json: bool) -> None:
    when_ts = parse_when(until, ctx.clock.now(), "--until")
    run_action(ctx, case, "pause", "pause", timeout, as_json, when_ts)


@click.command("resume", help=N_("End a pause now: the next deadline is one interval from now."))
@click.argument("case")
@timeout_option
@json_option
@click.pass_obj
def resume_cmd(ctx: Ctx, case: str, timeout: float, as_json: bool) -> None:
    run_action(ctx, case, "resume", "resume", timeout, as_json)


@click.group("release", help=N_("Release a case now, or object to an editor's release request."))
def release() -> None:
    pass


@release.command(
    "now", help=N_("Release CASE at once: every node serves its shares to your recipient outlets.")
)
@click.argument("case")
@click.option("--yes", is_flag=True, help=N_("Do not ask for confirmation."))
@timeout_option
@json_option
@click.pass_obj
def release_now_cmd(ctx: Ctx, case: str, yes: bool, timeout: float, as_json: bool) -> None:
    ctx.state.case(case)
    confirm("release now", case, yes)
    run_action(ctx, case, "release", "release now", timeout, as_json)


@release.command(
    "object", help=N_("Object to a pending editor release of CASE (inside its objection window).")
)
@click.argument("case")
@timeout_option
@json_option
@click.pass_obj
def release_object_cmd(ctx: Ctx, case: str, timeout: float, as_json: bool) -> None:
    run_action(ctx, case, "object", "objection", timeout, as_json)


# --- audit ------------------------------------------------------------------------------------


class NotRecoverable(VeladorError):
    """`velador audit` answered no."""

    exit_code = 3


@click.command(
    "audit",
    help=N_(
        "Could your recipients recover everything if you went silent now? Yes or "
        "no, and why.\n\n"
        "Every node proves with a fresh challenge that it holds its sealed shares; "
        "every store is checked for every object your snapshots need."
    ),
)
@click.argument("case")
@timeout_option
@json_option
@click.pass_obj
def audit_cmd(ctx: Ctx, case: str, timeout: float, as_json: bool) -> None:
    rec = ctx.state.case(case)
    ident = ctx.unlock()
    rep = audit(ctx.state, ident, ctx.clock, rec, ctx.s3_endpoint, timeout)
    if as_json:
        emit_json(rep.to_json())
    else:
        _print_audit(rep, rec.name, ctx.clock.now())
    if not rep.recoverable:
        # CLI-only: the reasons are already in the reader's language.
        raise NotRecoverable(
            N_("no: your recipients could not recover everything: %(reasons)s"),
            hint=_audit_hint(rep),
            reasons=" / ".join(note_text(r) for r in rep.reasons),
            case=rec.name,
        )


def _print_audit(rep: Any, case: str, now: int) -> None:
    con = out_console()
    print_release(con, case, rep.release, now)
    nt = wrapping_table(
        _("node"),
        _("state"),
        _("custody"),
        title=_("%(case)s: nodes") % {"case": case},
        title_justify="left",
    )
    for n in rep.nodes:
        custody = _("ok") if n["ok"] else note_text(n["problem"])
        nt.add_row(n["node"], state_word(n["state"]), custody)
    con.print(nt)
    stt = wrapping_table(
        _("store"),
        _("objects"),
        _("missing"),
        title=_("%(case)s: stores") % {"case": case},
        title_justify="left",
    )
    for s in rep.stores:
        cell = note_text(s["error"]) if s["error"] else _missing_cell(s)
        stt.add_row(s["store"], str(s["objects"]), cell)
    con.print(stt)
    if rep.offline_shares:
        con.print(
            ngettext(
                "%(n)d offline share counted as held (not checkable here)",
                "%(n)d offline shares counted as held (not checkable here)",
                rep.offline_shares,
            )
            % {"n": rep.offline_shares}
        )
    for w in rep.warnings:
        con.print(_("warning: %(line)s") % {"line": note_text(w)})
    if rep.recoverable and rep.release is not None and rep.release.complete:
        con.print(_("yes: the case was released, and every object is in some store"))
    elif rep.recoverable:
        con.print(_("yes: if you went silent now, your recipients could recover everything"))
    if any(s["n_missing"] for s in rep.stores):
        con.print(
            _("'velador verify %(case)s --repair' copies good replicas where needed")
            % {"case": case}
        )


def _missing_cell(s: dict[str, Any]) -> str:
    if s.get("n_damaged"):
        return _("%(missing)d (%(damaged)d damaged)") % {
            "missing": s["n_missing"],
            "damaged": s["n_damaged"],
        }
    return str(s["n_missing"])


def _audit_hint(rep: Any) -> str:
    """What to do about the first reason the answer is no (a template on %(case)s)."""
    if not any(s["objects"] for s in rep.stores):
        return N_("deposit your material: velador deposit %(case)s PATH...")
    if any(s["n_missing"] for s in rep.stores):
        return N_(
            "run 'velador verify %(case)s --repair' (it copies good replicas, and names what "
            "only a new deposit can restore)"
        )
    return N_("fix what is named (re-arm the case with 'velador case arm %(case)s')")
