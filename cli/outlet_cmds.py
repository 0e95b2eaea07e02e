"""`velador inbox` (recipient outlets, editors, reporters) and `velador release request` (editors).

Both talk to escrow nodes only (docs/protocol.md §4.5, §8.2): every request is signed with the
caller's identity and every notice or receipt is checked against the node's card key before it
is shown. The inbox keeps a durable "seen" cursor per node in local state (vault/inbox.py, shared
with the browser's inbox), moved only after the notices were printed, so a crash shows a notice
twice rather than never.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import click

from vault.cards import Card
from vault.errors import (
    N_,
    NodeError,
    Note,
    NotFoundError,
    PolicyError,
    VeladorError,
)
from vault.netrecover import DEFAULT_TIMEOUT, case_ref
from vault.switch import fan_out

from .context import Ctx, emit_json, out_console
from .i18n import _, error_text, ngettext
from .request_view import REQUEST_OUTCOMES, Asked
from .timefmt import local_time

TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(0.5, 600),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help=N_("Seconds to wait for each escrow node before naming it unreachable."),
)


def known_nodes(ctx: Ctx) -> list[tuple[str, Card]]:
    return [(alias, card) for alias, card in ctx.state.contacts() if card.role == "node"]


# --- inbox ---------------------------------------------------------------------------------


@click.command(
    help=N_(
        "Notices addressed to you (releases, alerts, reminders) from the nodes in your "
        "contacts.\n\n"
        "Each notice is signed by its node and checked before it is shown. Notices are shown "
        "once: the next run shows only newer ones (use --all to see them again)."
    )
)
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output (for scripts)."))
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help=N_("Show every notice the nodes still hold, not only new ones (marks nothing as seen)."),
)
@click.option(
    "--answer-drills",
    is_flag=True,
    help=N_(
        "Answer every drill (simulacro) these notices announce, as 'velador drill answer' does "
        "for each case."
    ),
)
@TIMEOUT
@click.pass_obj
def inbox(ctx: Ctx, as_json: bool, show_all: bool, answer_drills: bool, timeout: float) -> None:
    """`velador inbox` (help text above); the fetching and the cursor are vault/inbox.py's."""
    from vault.inbox import fetch_inbox, inbox_nodes, mark_seen

    from .context import default_home
    from .inbox_view import Names, group, home_args

    nodes = inbox_nodes(ctx.state)
    ident = ctx.unlock()
    fetched = fetch_inbox(ctx.state, nodes, ident, ctx.clock, timeout, show_all=show_all)
    answers, failed, rows = fetched.answers, fetched.failed, fetched.rows
    events = group(rows)
    names = Names(
        ctx.state.contacts(),
        {r.case_id: r.name for r in ctx.state.cases()},
        home_args(ctx.home, default_home()),
    )
    now = ctx.clock.now()
    if as_json:
        emit_json(
            {
                "notices": rows,
                "events": [_event_json(ev, names) for ev in events],
                "unreachable": [{"node": alias, "error": str(a.error)} for alias, a in failed],
            }
        )
    else:
        for _alias, a in failed:
            click.echo(
                _("velador: warning: %(error)s; its notices come on the next run")
                % {"error": error_text(a.error)[0] if a.error else ""},
                err=True,
            )
        _print_events(events, names, show_all, now)
    mark_seen(ctx.state, fetched, ctx.clock.now())  # only now that they were shown
    if answer_drills:
        _answer_drills(ctx, ident, events, [c for _, c in nodes], timeout, as_json)
    if len(failed) == len(answers):
        raise NodeError(
            N_("none of your %(n)d node(s) could be asked for notices: %(errors)s"),
            hint=N_("check your network connection (or Tor), then run 'velador inbox' again"),
            n=len(answers),
            # Notes, so that each node's error is said in the reader's language too.
            errors=Note("%(errors)s", errors=[Note.of(a.error) for _alias, a in failed]),
        )


def _answer_drills(
    ctx: Ctx, ident: Any, events: list[Any], nodes: list[Any], timeout: float, as_json: bool
) -> None:
    """`inbox --answer-drills`: answer the drill of each case a drill notice named (issue 13: an
    outlet answers "with velador drill answer, or from velador inbox"). By case id: the nodes
    you know are asked, and the stores checked are those K of them name (protocol §11.2)."""
    from .drill_cmds import answer_case

    cases = sorted({ev.case_id for ev in events if ev.event == "drill" and ev.to != "reporter"})
    failures = 0
    for case_id in cases:
        if not as_json:
            click.echo(_("Answering the drill of case %(case)s...") % {"case": case_id}, err=True)
        try:
            answer_case(ctx, ident, case_ref(case_id, nodes), (), timeout, as_json)
        except VeladorError as exc:
            failures += 1
            click.echo(_("velador: error: %(error)s") % {"error": error_text(exc)[0]}, err=True)
    if failures:
        raise PolicyError(
            N_("%(n)d of %(total)d drill answers failed"),
            hint=N_("the lines above say what failed; tell the reporter"),
            n=failures,
            total=len(cases),
        )


def _event_json(ev: Any, names: Any) -> dict[str, Any]:
    from . import i18n
    from .inbox_view import describe

    # --json stays English (scripts parse it), whatever the reader's language.
    lang = i18n.language()
    i18n.setup("en")
    try:
        line, next_cmd = describe(ev, names)
    finally:
        i18n.setup(lang)
    return {
        "case_id": ev.case_id,
        "event": ev.event,
        "time": ev.time,
        "nodes": ev.nodes,
        "text": line,
        "next": next_cmd,
    }


def _print_events(events: list[Any], names: Any, show_all: bool, now: int) -> None:
    """One line per event (the notices of all nodes that report it), then what to run."""
    from .inbox_view import describe

    if not events:
        click.echo(_("No new notices.") if not show_all else _("No notices."), err=True)
        return
    con = out_console()
    for ev in events:
        line, next_cmd = describe(ev, names, now)
        con.print(f"{local_time(ev.time, now)}  {line}", markup=False)
        if next_cmd:
            con.print(_("    next: %(command)s") % {"command": next_cmd}, markup=False)


# --- release request ---------------------------------------------------------------------------


@click.command(
    "request",
    help=N_(
        "Editors: ask every node of CASE to release it (counts toward the editor quorum).\n\n"
        "When the quorum the reporter set is reached, the objection window opens; if the "
        "reporter does not object in time, the nodes release the case to the recipient outlets."
    ),
)
@click.argument("case", metavar="CASE_CARD_OR_ID")
@click.option(
    "--reason-file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help=N_(
        "Read why you ask from this file ('-' for standard input); sent to the nodes with "
        "your request. Without it you are asked in the terminal."
    ),
)
@click.option(
    "--reason",
    default=None,
    help=N_(
        "Why you ask, given on the command line (it stays in your shell history and is "
        "visible to other programs while it runs: prefer --reason-file or the prompt)."
    ),
)
@click.option("--yes", is_flag=True, help=N_("Do not ask for confirmation."))
@TIMEOUT
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def release_request(
    ctx: Ctx,
    case: str,
    reason_file: IO[str] | None,
    reason: str | None,
    yes: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """`velador release request` (help text above)."""
    reason = _release_reason(reason_file, reason)
    ref = case_ref(case, [card for _, card in known_nodes(ctx)])
    _confirm_request(ref.case_id, len(ref.nodes), yes)
    ident = ctx.unlock()

    answers = fan_out(
        ref.nodes, ident, ctx.clock, lambda c: c.release_request(ref.case_id, reason), timeout
    )
    results = [Asked.of(card, a.error, a.body) for card, a in zip(ref.nodes, answers, strict=True)]
    holding = [r for r in results if r.outcome != "does not hold the case"]
    if not holding:
        # A node answers the same for a case it does not hold and for a key the case does not
        # name (docs/protocol.md §2.4), so both are possible here.
        raise NotFoundError(
            N_("none of the %(n)d node(s) asked holds case %(case_id)s"),
            hint=N_(
                "check the case id, or use the case card the reporter gave you; nodes answer "
                "the same way to an editor the reporter did not name (your fingerprint is "
                "%(fingerprint)s)"
            ),
            n=len(results),
            case_id=ref.case_id,
            fingerprint=ident.fingerprint,
        )
    rows = [
        {
            "node": r.card.name,
            "outcome": r.outcome,
            "detail": r.detail,
            "state": r.receipt.get("state") if r.receipt else None,
            "release_at": r.receipt.get("release_at") if r.receipt else None,
        }
        for r in holding
    ]
    if as_json:
        emit_json({"case_id": ref.case_id, "nodes": rows})
    else:
        now = ctx.clock.now()
        for row in rows:
            click.echo(_request_line(row, now), err=True)
    accepted = [r for r in holding if r.outcome == "accepted"]
    if not accepted and all(r.outcome == "refused" for r in holding):
        raise PolicyError(
            N_("every node of case %(case_id)s refused your request: %(detail)s"),
            hint=N_(
                "only the editors the reporter named may ask; your fingerprint is %(fingerprint)s"
            ),
            case_id=ref.case_id,
            detail=holding[0].detail,
            fingerprint=ident.fingerprint,
        )
    missed = [r for r in holding if r.outcome != "accepted"]
    if missed:
        names = ", ".join(f"{r.card.name} ({r.outcome})" for r in missed)
        err: type[VeladorError] = (
            NodeError if all(r.outcome == "unreachable" for r in missed) else PolicyError
        )
        raise err(
            N_(
                "your request reached %(accepted)d of the %(holding)d nodes of case "
                "%(case_id)s; not accepted by %(names)s"
            ),
            hint=N_("it counts at the nodes that accepted it; run the command again later"),
            accepted=len(accepted),
            holding=len(holding),
            case_id=ref.case_id,
            names=names,
        )
    if not as_json:
        click.echo(
            _("Release requested at all %(n)d nodes of case %(case_id)s.")
            % {"n": len(accepted), "case_id": ref.case_id},
            err=True,
        )


def _request_line(row: dict[str, Any], now: int) -> str:
    """One node's answer to a release request, a whole sentence per shape."""
    values = {
        "node": f"{row['node']:<16}",
        "outcome": _(REQUEST_OUTCOMES.get(row["outcome"], row["outcome"])),
        "state": row["state"],
        "when": local_time(row["release_at"], now) if row["release_at"] else "",
    }
    if row["state"] and row["release_at"]:
        text = _("  %(node)s %(outcome)s (state %(state)s, release at %(when)s)")
    elif row["state"]:
        text = _("  %(node)s %(outcome)s (state %(state)s)")
    else:
        text = "  %(node)s %(outcome)s"
    text = text % values
    return f"{text}: {row['detail']}" if row["detail"] else text


def _confirm_request(case_id: str, n_nodes: int, yes: bool) -> None:
    """Ask before sending, as `release now` does: a request counts toward a release at once."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise PolicyError(
            N_("refusing to ask for a release without confirmation"),
            hint=N_("add --yes once you are sure of the case id"),
        )
    question = ngettext(
        "Send a release request for case %(case_id)s to %(n)d escrow node? It counts "
        "toward a release to the recipient outlets; the reporter can still object in time",
        "Send a release request for case %(case_id)s to %(n)d escrow nodes? It counts "
        "toward a release to the recipient outlets; the reporter can still object in time",
        n_nodes,
    ) % {"case_id": case_id, "n": n_nodes}
    if not click.confirm(question, default=False, err=True):
        click.echo(_("Nothing was sent."), err=True)
        raise click.exceptions.Exit(0)


def _release_reason(reason_file: IO[str] | None, reason: str | None) -> str:
    """The editor's reason, from a file, the prompt, or (discouraged) argv.

    The reason says why the editor fears for the reporter ("detained in Culiacán since the
    12th"): on the command line it would stay in shell history and show in `ps` on a machine that
    may be seized, so the file or the prompt is the default way to give it.
    """
    if reason_file is not None and reason is not None:
        raise PolicyError(
            N_("give the reason once: --reason-file or --reason, not both"),
            hint=N_("prefer --reason-file FILE (or '-' for standard input)"),
        )
    if reason_file is not None:
        reason = reason_file.read(4096).strip()
    elif reason is None:
        if not sys.stdin.isatty():
            raise PolicyError(
                N_("say why you ask for the release"),
                hint=N_(
                    "use --reason-file FILE (or '-' to read standard input), "
                    "or run the command in a terminal to be asked"
                ),
            )
        reason = click.prompt(_("Why do you ask for the release"), err=True)
    reason = reason.strip()
    if not reason or len(reason) > 1000:
        raise PolicyError(
            N_("the reason must say why, in 1 to 1000 characters"),
            hint=N_("write it in a file and pass --reason-file FILE"),
        )
    return reason


def release_group() -> click.Group:
    """The `release` group: the reporter side's (cli.switch_cmds) when present, else our own."""
    try:
        from .switch_cmds import release  # type: ignore[attr-defined]
    except ImportError:

        @click.group(
            "release", help=N_("Releases: editors request one; reporters release now or object.")
        )
        def release() -> None:
            pass

    group: click.Group = release
    if "request" not in group.commands:
        group.add_command(release_request)
    return group
