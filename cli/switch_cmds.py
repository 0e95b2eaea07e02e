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
from .release_view import print_release, release_json, switch_label
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
        return "ok"
    assert r.error is not None
    return ("queued: " if r.queued else "failed: ") + short(r)


def node_table(title: str | None, results: list[NodeResult], now: int) -> Any:
    table = wrapping_table(
        "node", "result", "state", "next deadline", title=title, title_justify="left"
    )
    for r in results:
        body = r.body or {}
        deadline = body.get("deadline")
        if not deadline and body.get("state") == "PAUSED":
            deadline = body.get("paused_until")
        table.add_row(r.node, result_text(r), str(body.get("state") or "-"), when(deadline, now))
    return table


def short(r: NodeResult) -> str:
    """The node's error without the 'node NAME: ' prefix the client adds."""
    msg = r.error.message if r.error else "?"
    prefix = f"node {r.node}: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg


def require_all(action: str, results: list[NodeResult], case: str) -> None:
    """Raise one error naming every node that did not do `action`."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    done = len(results) - len(failed)
    detail = "; ".join(f"{r.node}: {short(r)}" for r in failed)
    err = NodeError if all(r.unreachable for r in failed) else PolicyError
    raise err(
        f"{action} reached {done} of {len(results)} nodes ({detail})",
        hint=f"run the same command again; 'velador status {case}' shows each node's state",
    )


def show_coverage_warnings(lines: list[str]) -> None:
    """The coverage warnings of vault.switch.coverage_warnings (a rotation not finished, nodes
    without the case), on stderr where they cannot scroll past unseen in a table."""
    for line in lines:
        click.secho(f"WARNING: {line}", err=True, fg="yellow", bold=True)


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
            "no armed case to check in",
            hint="create one with 'velador case create NAME --node ALIAS ...'",
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
            f"no node of {names} could be reached; the check-in is queued",
            hint="check your connection; 'velador agent' re-sends queued check-ins",
        )


def _print_checkins(done: list[Any], closed: list[Any], now: int) -> None:
    """One table per case, titled with the check-in's local time (its sequence number is a
    timestamp-sized counter nobody should have to read), then deadlines, queues, releases."""
    con = out_console()
    for c in done:
        print_release(con, c.case, c.release, now)
        con.print(node_table(f"{c.case}: check-in of {local_time(now, now)}", c.results, now))
    for c in done:
        if c.release is not None and c.release.complete:
            continue
        queued = [r.node for r in c.results if r.queued]
        if c.next_deadline:
            click.echo(f"{c.case}: next deadline {when(c.next_deadline, now)}", err=True)
        if queued:
            click.echo(
                f"{c.case}: queued for {', '.join(queued)}; 'velador agent' re-sends it, "
                "and the nodes you reached pass it on",
                err=True,
            )
        show_coverage_warnings(c.warnings)
    for rec in closed:
        info = known_release(rec)
        click.echo(
            f"{rec.name}: not checked in, the case was released "
            f"{'on ' + when(info.released_at, now) if info and info.released_at else 'earlier'}"
            f" (see 'velador status {rec.name}')",
            err=True,
        )


def _released_cases(ctx: Ctx, names: tuple[str, ...]) -> list[Any]:
    """The cases (named, or all) this laptop knows were released: a check-in skips them."""
    recs = [ctx.state.case(n) for n in names] if names else ctx.state.cases()
    return [r for r in recs if r.status == "released"]


def _released_json(recs: list[Any]) -> list[dict[str, Any]]:
    return [{"case": r.name, "release": release_json(known_release(r))} for r in recs]


def _checkin_refused(recs: list[Any]) -> PolicyError:
    unique = list(dict.fromkeys(r.name for r in recs))
    names = ", ".join(unique)
    hint = f"'velador status {unique[0]}' shows when and by which rule"
    if len(unique) == 1:
        return PolicyError(
            f"case {names} was released; checking in no longer changes anything", hint=hint
        )
    return PolicyError(
        f"cases {names} were released; checking in no longer changes anything", hint=hint
    )


# --- status -----------------------------------------------------------------------------------


def status_rows(st: Any, now: int) -> Any:
    table = wrapping_table(
        "node",
        "state",
        "last check-in",
        "next deadline",
        "releases at",
        "editors",
        title=f"{st.case} ({st.case_id}): {switch_label(st.release, st.local)}",
        title_justify="left",
    )
    for r in st.results:
        if not r.ok or r.body is None:
            table.add_row(r.node, "unreachable" if r.unreachable else "error", "-", "-", "-", "-")
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
            str(b.get("state")),
            when(b.get("last_beat"), now),
            when(deadline, now),
            _release_cell(b, now),
            editors,
        )
    return table


def _release_cell(b: dict[str, Any], now: int) -> str:
    if b.get("state") == "RELEASED" and b.get("released_at"):
        return f"released {when(b['released_at'], now)}"
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
                "no case has escrow nodes", hint="see 'velador case create --help' (--node)"
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
                f"{s.case}: editor release pending ({asked}); you can object until "
                f"{when(until, now)} with 'velador release object {s.case}'"
            )
        for line in s.disagreements:
            con.print(f"warning: {line}")
        show_coverage_warnings(s.warnings)
        for line in freshness_lines(ctx.state, ctx.state.case(s.case), now, ident):
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
    asked = f"{b.get('editor_requests')} of {b.get('editor_quorum')} editors asked"
    return asked, min(p["pending_until"] for p in pending)


def _remote_status(ctx: Ctx, text: str, timeout: float, as_json: bool) -> None:
    """An editor's or recipient's view of a case they do not own (a case card or a case id).

    Nodes answer status requests from everyone the policy names, so an editor can follow the
    quorum count and the objection window after asking for a release."""
    from collections import Counter

    from vault.errors import NotFoundError
    from vault.netrecover import case_ref
    from vault.switch import CaseStatus, fan_out

    contacts = [card for _, card in ctx.state.contacts()]
    ref = case_ref(
        text,
        [c for c in contacts if c.role == "node"],
        [c for c in contacts if c.role == "reporter"],
    )
    ident = ctx.unlock()
    results = fan_out(ref.nodes, ident, ctx.clock, lambda c: c.status(ref.case_id), timeout)
    if ref.policy_hash is None:  # a bare id: nodes that never heard of the case are not its nodes
        results = [r for r in results if not isinstance(r.error, NotFoundError)]
    if not results:
        raise NotFoundError(
            f"no escrow node you know has case {ref.case_id}",
            hint="ask the reporter for the case card, or add the case's nodes as contacts",
        )
    hashes = Counter(r.body.get("policy_hash") for r in results if r.ok and r.body)
    pinned = ref.policy_hash or (hashes.most_common(1)[0][0] if hashes else "")
    st = CaseStatus("case", ref.case_id, "you are not its reporter", str(pinned), results)
    now = ctx.clock.now()
    if as_json:
        emit_json({"time": now, "cases": [st.to_json()]})
        return
    con = out_console()
    con.print(status_rows(st, now))
    if pending := _pending_release(results):
        asked, until = pending
        con.print(
            f"editor release pending ({asked}); the nodes release at {when(until, now)} "
            "unless the reporter objects"
        )
    for line in st.disagreements:
        con.print(f"warning: {line}")


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
        out_console().print(node_table(f"{rec.name}: {label}", results, now))
    require_all(label, results, rec.name)


def confirm(what: str, yes: bool) -> None:
    """Ask before an action that cannot be undone. Answering no is a choice, not an error: a
    calm line and exit status 0 (issue 12 §9)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise PolicyError(f"refusing to {what} without confirmation", hint="add --yes")
    if not click.confirm(f"Really {what}? This cannot be undone", default=False, err=True):
        declined()


def declined() -> None:
    """The person answered no: say that nothing happened, and stop with exit status 0."""
    click.echo("Nothing was sent; nothing changed.", err=True)
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
    confirm(f"release {case} to your recipients now", yes)
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
        con = out_console()
        print_release(con, rec.name, rep.release, ctx.clock.now())
        nt = wrapping_table(
            "node", "state", "custody", title=f"{rec.name}: nodes", title_justify="left"
        )
        for n in rep.nodes:
            nt.add_row(n["node"], str(n["state"] or "-"), "ok" if n["ok"] else n["problem"])
        con.print(nt)
        stt = wrapping_table(
            "store", "objects", "missing", title=f"{rec.name}: stores", title_justify="left"
        )
        for s in rep.stores:
            stt.add_row(s["store"], str(s["objects"]), s["error"] or _missing_cell(s))
        con.print(stt)
        if rep.offline_shares:
            con.print(f"{rep.offline_shares} offline share(s) counted as held (not checkable here)")
        for w in rep.warnings:
            con.print(f"warning: {w}")
        if rep.recoverable and rep.release is not None and rep.release.complete:
            con.print("yes: the case was released, and every object is in some store")
        elif rep.recoverable:
            con.print("yes: if you went silent now, your recipients could recover everything")
        if any(s["n_missing"] for s in rep.stores):
            con.print(f"'velador verify {rec.name} --repair' copies good replicas where needed")
    if not rep.recoverable:
        raise NotRecoverable(
            "no: your recipients could not recover everything: " + " / ".join(rep.reasons),
            hint=_audit_hint(rep, rec.name),
        )


def _missing_cell(s: dict[str, Any]) -> str:
    if s.get("n_damaged"):
        return f"{s['n_missing']} ({s['n_damaged']} damaged)"
    return str(s["n_missing"])


def _audit_hint(rep: Any, case: str) -> str:
    """What to do about the first reason the answer is no."""
    if not any(s["objects"] for s in rep.stores):
        return f"deposit your material: velador deposit {case} PATH..."
    if any(s["n_missing"] for s in rep.stores):
        return (
            f"run 'velador verify {case} --repair' (it copies good replicas, and names what only "
            "a new deposit can restore)"
        )
    return f"fix what is named (re-arm the case with 'velador case arm {case}')"
