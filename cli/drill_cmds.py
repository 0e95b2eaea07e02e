"""`velador drill CASE`, `drill answer`, `drill report`: simulacros of the release path.

Thin over vault/drill.py (docs/protocol.md §11). The reporter starts a drill at every node
(`velador drill CASE`, or on the schedule of `case create --drill-every`); recipients and
editors answer (`velador drill answer CASE_CARD_OR_ID`, which `velador inbox` suggests); the
reporter reads the verdict (`velador drill report CASE`, and a summary in `velador status`).
A drill never releases a share, a key or a file.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

import click

from vault import drill as vdrill
from vault.durations import parse_duration
from vault.errors import N_, NodeError, NotFoundError, PolicyError
from vault.policy import Policy

from .context import Ctx, emit_json, out_console
from .i18n import _, ngettext
from .switch_cmds import json_option, timeout_option
from .timefmt import when

DRILL_MIN = 86400
"""The shortest schedule a policy accepts (vault/policy.py), one day."""


def drill_interval(text: str) -> int:
    """`--drill-every` as seconds (at least one day)."""
    seconds = parse_duration(text, "--drill-every")
    if seconds < DRILL_MIN:
        raise PolicyError(
            _("--drill-every must be at least one day"), hint=_("for example --drill-every 90d")
        )
    return seconds


class DrillGroup(click.Group):
    """`velador drill CASE` starts a drill; `velador drill answer|report ...` are subcommands."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: Any) -> None:
        formatter.write_usage(ctx.command_path, "CASE | answer CASE_CARD_OR_ID | report CASE")


@click.group(
    "drill",
    cls=DrillGroup,
    help=N_(
        "Drills (simulacros): prove that a release would reach every recipient, without one.\n\n"
        "'velador drill CASE' starts a drill at every node of CASE: each sends a notice marked "
        "SIMULACRO / DRILL through every channel a real release uses, and a challenge each "
        "recipient can open only with the key its envelopes are sealed to. Nothing is released."
    ),
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
def drill() -> None:
    """`velador drill` (help text above, translated where it is shown)."""


def _names(ctx: Ctx, policy: Policy | None) -> Any:
    return party_names(ctx.state, policy)


def party_names(state: Any, policy: Policy | None) -> Any:
    """fingerprint -> the name the reporter knows a party by (a contact's alias first); the
    browser's drill page (cli/ui/case_admin.py) uses the same names."""
    names: dict[str, str] = {}
    if policy is not None:
        for card in (policy.reporter, *policy.recipients, *policy.nodes):
            names[card.fingerprint] = card.name
        for card in policy.switch.editors if policy.switch else ():
            names[card.fingerprint] = card.name
    for alias, card in state.contacts():
        names[card.fingerprint] = alias
    return lambda fp: names.get(fp, fp)


# --- start --------------------------------------------------------------------------------------


@drill.command(
    "start",
    hidden=True,
    help=N_("Start a drill of CASE at every node (what 'velador drill CASE' runs)."),
)
@click.argument("case")
@timeout_option
@json_option
@click.pass_obj
def start_cmd(ctx: Ctx, case: str, timeout: float, as_json: bool) -> None:
    """`velador drill start` (help text above)."""
    rec = ctx.state.case(case)
    ident = ctx.unlock()
    drill_id, results = vdrill.start_case(ctx.state, ident, rec, ctx.clock, timeout)
    started = [r for r in results if r.ok]
    if as_json:
        emit_json({"case": rec.name, "drill": drill_id, "nodes": [r.to_json() for r in results]})
    else:
        for r in results:
            state = _("started") if r.ok else str(r.error)
            click.echo(f"  {r.node:<16} {state}", err=True)
    if not started:
        raise NodeError(
            _("no node of case %(case)s started the drill") % {"case": rec.name},
            hint=_("check your network connection, then run 'velador drill %(case)s' again")
            % {"case": rec.name},
        )
    if not as_json:
        click.echo(
            _(
                "Drill %(drill)s started at %(n)s of %(total)s nodes. Nothing was released. "
                "Recipients and editors now get a notice marked SIMULACRO / DRILL; see who "
                "answered with 'velador drill report %(case)s'."
            )
            % {"drill": drill_id, "n": len(started), "total": len(results), "case": rec.name},
            err=True,
        )
    if len(started) < len(results):
        raise NodeError(
            ngettext(
                "%(n)s node did not start the drill",
                "%(n)s nodes did not start the drill",
                len(results) - len(started),
            )
            % {"n": len(results) - len(started)},
            hint=_("a node that did not start it shows in the report as broken"),
        )


# --- answer -------------------------------------------------------------------------------------


@drill.command(
    "answer",
    help=N_(
        "Answer the drill of a case (recipient outlets and editors).\n\n"
        "Proves to every node you can reach that you can reach enough nodes, that you still hold "
        "the key your envelopes are sealed to (recipients) or can sign a release request "
        "(editors), that you can read and check the case's stores, and that your velador can "
        "recover the case."
    ),
)
@click.argument("case", metavar="CASE_CARD_OR_ID")
@click.option(
    "--store",
    "stores",
    multiple=True,
    help=N_("A store of the case to check (the case card names them; repeat for several)."),
)
@timeout_option
@json_option
@click.pass_obj
def answer_cmd(ctx: Ctx, case: str, stores: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """`velador drill answer` (help text above)."""
    from vault.netrecover import case_ref

    from .outlet_cmds import known_nodes

    ref = case_ref(case, [card for _, card in known_nodes(ctx)])
    answer_case(ctx, ctx.unlock(), ref, stores, timeout, as_json)


def answer_case(
    ctx: Ctx, ident: Any, ref: Any, stores: tuple[str, ...], timeout: float, as_json: bool
) -> None:
    """Answer the drill of one case (`drill answer`, and `inbox --answer-drills` for each case
    with a drill notice); raises when no node took the answer or a proof failed."""
    rep = vdrill.answer(
        ident, ref.case_id, ref.nodes, list(stores or ref.stores), ctx.clock, timeout
    )
    answered = [n for n in rep.nodes if n.error is None]
    if as_json:
        emit_json(
            {
                "case_id": ref.case_id,
                "reached": rep.reached,
                "needed": rep.needed,
                "stores": rep.stores,
                "store_problems": rep.store_problems,
                "nodes": [
                    {"node": n.node.name, "role": n.role, "proofs": n.proofs, "error": n.error}
                    for n in rep.nodes
                ],
            }
        )
    else:
        _print_answer(rep)
    if not answered and rep.already:
        if not as_json:
            click.echo(
                _("You had already answered this drill at those nodes; nothing more to do."),
                err=True,
            )
        return
    if not answered:
        raise NotFoundError(
            _("no node of case %(case)s has a drill open for you") % {"case": ref.case_id},
            hint=_(
                "if you got a drill notice, check that you use the identity the case names "
                "(a lost key cannot answer: tell the reporter)"
            ),
        )
    failed = _failed_proofs(rep)
    if failed:
        raise PolicyError(
            _("your drill answer failed: %(what)s") % {"what": "; ".join(failed)},
            hint=_("fix what failed, and tell the reporter, who reads the same in the report"),
        )


def _failed_proofs(rep: vdrill.AnswerReport) -> list[str]:
    out = []
    for n in rep.nodes:
        if n.error is not None:
            continue
        p = n.proofs or {}
        if not p.get("key"):
            out.append(
                _(
                    "at %(node)s you could not open your challenge: you no longer hold the key "
                    "your envelopes are sealed to"
                )
                % {"node": n.node.name}
                if n.role == "recipient"
                else _("at %(node)s your drill-only release request did not verify")
                % {"node": n.node.name}
            )
        if not p.get("reach"):
            out.append(
                ngettext(
                    "you reached %(n)s node; a recovery needs %(k)s",
                    "you reached %(n)s nodes; a recovery needs %(k)s",
                    len(rep.reached),
                )
                % {"n": len(rep.reached), "k": rep.needed}
            )
        if not p.get("stores") and n.role == "recipient":
            out.append(
                _("the case's stores could not be read and checked (answer with the case card)")
            )
        if not p.get("software"):
            out.append(_("this velador is too old to recover the case: upgrade it"))
    return sorted(set(out))


def _print_answer(rep: vdrill.AnswerReport) -> None:
    con = out_console()
    yes, no = _("ok"), _("FAILED")
    for n in rep.nodes:
        if n.error is not None:
            con.print(f"  {n.node.name:<16} {n.error}", markup=False)
            continue
        p = n.proofs or {}
        con.print(
            _(
                "  %(node)-16s %(role)s: key %(key)s, reach %(reach)s, stores %(stores)s, "
                "software %(software)s"
            )
            % {
                "node": n.node.name,
                "role": _("recipient") if n.role == "recipient" else _("editor"),
                **{k: yes if p.get(k) else no for k in ("key", "reach", "stores", "software")},
            },
            markup=False,
        )
    for problem in rep.store_problems:
        con.print(_("  store: %(problem)s") % {"problem": problem}, markup=False)


# --- report and verdict -------------------------------------------------------------------------


@drill.command(
    "report", help=N_("Who got the drill notices on which channel, who answered, and the verdict.")
)
@click.argument("case")
@click.option("--drill", "drill_id", help=N_("Which drill (default: the newest)."))
@timeout_option
@json_option
@click.pass_obj
def report_cmd(ctx: Ctx, case: str, drill_id: str | None, timeout: float, as_json: bool) -> None:
    """`velador drill report` (help text above)."""
    rec = ctx.state.case(case)
    ident = ctx.unlock()
    reports = vdrill.collect(ident, rec.policy, ctx.clock, timeout, drill_id)
    name = _names(ctx, rec.policy)
    v = vdrill.verdict(rec.policy, reports, name)
    now = ctx.clock.now()
    if as_json:
        emit_json(
            {
                "case": rec.name,
                "drill": v.drill,
                "verdict": verdict_line(v),
                "ok": v.ok,
                "recipients_ok": v.recipients_ok,
                "recipients": v.recipients,
                "nodes_ok": v.nodes_ok,
                "nodes": v.nodes,
                "problems": [p.english for p in v.problems],
                "reports": [r.body if r.ok else {"error": str(r.error)} for r in reports],
            }
        )
    else:
        _print_report(rec.policy, reports, name, now)
        for line in answer_lines(rec.policy, reports, name, now):
            click.echo(line)
        for line in verdict_lines(v):
            click.echo(line)
    if (problem := report_problem(v, rec.name)) is not None:
        raise problem


def report_problem(v: vdrill.Verdict, case: str) -> NotFoundError | PolicyError | None:
    """What `velador drill report` ends with when the verdict is not clean (the error it exits
    with; the browser's drill page shows the same sentence), or None."""
    if v.drill is None:
        return NotFoundError(
            _("no node has a drill of case %(case)s") % {"case": case},
            hint=_("start one with 'velador drill %(case)s'") % {"case": case},
        )
    if not v.ok:
        return PolicyError(
            ngettext(
                "the drill found %(n)s problem", "the drill found %(n)s problems", len(v.problems)
            )
            % {"n": len(v.problems)}
            if v.problems
            else _("not every recipient has answered yet"),
            hint=_("each line above says who must fix what; run a new drill once they did"),
        )
    return None


def _print_report(policy: Policy, reports: list[Any], name: Any, now: int) -> None:
    con = out_console()
    for line in report_lines(policy, reports, name, now):
        con.print(line, markup=False)


def report_lines(policy: Policy, reports: list[Any], name: Any, now: int) -> list[str]:
    """Per node: its drill, and per party each channel's delivery and the answer (`velador
    drill report`, and the browser's drill page)."""
    lines = []
    for card, res in zip(policy.nodes, reports, strict=True):
        if not res.ok:
            lines.append(
                _("node %(node)s: no report (%(error)s)") % {"node": card.name, "error": res.error}
            )
            continue
        b = res.body
        lines.append(
            _("node %(node)s: drill %(drill)s, started %(started)s, open until %(ends)s")
            % {
                "node": card.name,
                "drill": b["drill"],
                "started": when(b["started"], now),
                "ends": when(b["ends"], now),
            }
        )
        for p in b["parties"]:
            chans = ", ".join(
                f"{c['channel']}"
                + (f" {c['target']}" if c.get("target") else "")
                + f": {_result(c['result'])}"
                + (f" ({c['error']})" if c.get("error") and c["result"] != "delivered" else "")
                for c in p["channels"]
            )
            answered = (
                _("answered %(when)s") % {"when": when(p["answered"], now)}
                if p["answered"]
                else _("no answer")
            )
            if p["role"] == "reporter":
                answered = ""
            lines.append(
                f"  {_role(p['role']):<10} {name(p['party']):<20} {chans}"
                + (f"; {answered}" if answered else "")
            )
    return lines


def _result(result: str) -> str:
    return {
        "delivered": _("delivered"),
        "pending": _("pending"),
        "failing": _("failing"),
        "failed": _("failed"),
    }.get(result, result)


def _role(role: str) -> str:
    return {"recipient": _("recipient"), "editor": _("editor"), "reporter": _("reporter")}.get(
        role, role
    )


def answer_lines(policy: Policy, reports: list[Any], name: Any, now: int) -> list[str]:
    """Per recipient and editor: when, and through which nodes, it answered."""
    lines = []
    for card, role, at in vdrill.answers_by_party(policy, reports):
        values = {"role": _role(role), "who": name(card.fingerprint)}
        if at:
            values["nodes"] = ", ".join(node for node, _t in at)
            values["when"] = when(min(t for _n, t in at), now)
            lines.append(_("%(role)s %(who)s answered %(when)s through %(nodes)s") % values)
        else:
            lines.append(_("%(role)s %(who)s has not answered") % values)
    return lines


def verdict_line(v: vdrill.Verdict) -> str:
    """The one-line verdict of issue 13, in the reader's language."""
    return _(
        "A release now would reach %(n)s of %(m)s recipients through %(k)s of %(nodes)s nodes."
    ) % {"n": v.recipients_ok, "m": v.recipients, "k": v.nodes_ok, "nodes": v.nodes}


def verdict_lines(v: vdrill.Verdict) -> list[str]:
    lines = [
        _("Drill %(drill)s: %(verdict)s") % {"drill": v.drill or "-", "verdict": verdict_line(v)}
    ]
    for p in v.problems:
        lines.append(_("  broken: %(what)s") % {"what": _(p.template) % p.values})
    if v.pending:
        lines.append(
            ngettext(
                "  %(n)s notice delivery is still being tried; look again later",
                "  %(n)s notice deliveries are still being tried; look again later",
                v.pending,
            )
            % {"n": v.pending}
        )
    return lines


def channel_lines(policy: Policy, reports: list[Any], name: Any) -> list[str]:
    """Per node: how many of its drill notices went out, and each channel that failed (for
    `velador status`; `velador drill report` lists every one)."""
    lines = []
    for card, res in zip(policy.nodes, reports, strict=True):
        if not res.ok:
            continue  # the verdict names a node that did not answer
        chans = [(p, c) for p in res.body["parties"] for c in p["channels"]]
        sent = sum(1 for _p, c in chans if c["result"] == "delivered")
        lines.append(
            _("node %(node)s: %(sent)s of %(total)s drill notices delivered")
            % {"node": card.name, "sent": sent, "total": len(chans)}
        )
        for p, c in chans:
            if c["result"] in ("failed", "failing"):
                lines.append(
                    _("  %(channel)s to %(who)s: %(result)s (%(error)s)")
                    % {
                        "channel": c["channel"],
                        "who": name(p["party"]),
                        "result": _result(c["result"]),
                        "error": c.get("error") or "-",
                    }
                )
    return lines


def status_lines(ctx: Ctx, rec: Any, ident: Any, timeout: float) -> list[str]:
    """For `velador status`: the verdict of the case's newest drill, when this laptop started
    one (the nodes are asked; details in `velador drill report`)."""
    if not rec.extra.get("drill"):
        return []
    reports = vdrill.collect(ident, rec.policy, ctx.clock, timeout)
    v = vdrill.verdict(rec.policy, reports, _names(ctx, rec.policy))
    if v.drill is None:
        return []
    name = _names(ctx, rec.policy)
    lines = [*channel_lines(rec.policy, reports, name)]
    lines += answer_lines(rec.policy, reports, name, ctx.clock.now())
    lines += verdict_lines(v)
    if not v.ok:
        lines.append(
            _("  details: velador drill report %(case)s") % {"case": shlex.quote(rec.name)}
        )
    return lines


# --- the inbox ----------------------------------------------------------------------------------


def inbox_line(
    ev: Any, names: Any, own: str | None, seen: dict[str, Any], now: int | None = None
) -> tuple[str, str]:
    """`velador inbox`: a drill notice, marked as one, and what to run."""
    drill_info = ev.value("drill") or {}
    ends = drill_info.get("ends") if isinstance(drill_info, dict) else None
    values = {
        "case": own or ev.case_id,
        "who": names.who(ev.value("reporter")),
        "ends": when(ends, int(time.time()) if now is None else now)
        if isinstance(ends, int)
        else "-",
        "count": seen["count"],
        "nodes": seen["nodes"],
    }
    if ev.to == "reporter":
        line = (
            _(
                "SIMULACRO / DRILL: %(case)s: your drill started at these nodes: %(nodes)s. "
                "Nothing was released."
            )
            % values
        )
        return line, names.command("drill", "report", shlex.quote(values["case"]))
    line = (
        _(
            "SIMULACRO / DRILL: %(who)s is testing the release of case %(case)s; nothing was "
            "released. Answer before %(ends)s (nodes that sent it: %(nodes)s)."
        )
        % values
    )
    return line, names.command("drill", "answer", ev.case_id)
