"""`velador case ...`: create, arm, list, show, card and destroy cases.

`case create` with `--node` registers the case at every node (vault/switch.py `arm`); a node that
refuses or cannot be reached leaves the case "arming", which `velador case arm CASE` (or the same
`case create` command run again) completes.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from vault import caseplan
from vault.cards import Card
from vault.case import create_case, register_locally
from vault.caseplan import contact_cards, share_spec
from vault.clock import iso
from vault.custody import split_note
from vault.errors import N_, NodeError, NotFoundError, PolicyError
from vault.policy import Switch
from vault.released import known_release
from vault.state import CaseRecord
from vault.switch import ArmReport, act, arm, arming_state, make_case_card, mark_arming

from .context import Ctx, emit_json, out_console
from .context import table as wrapping_table
from .i18n import _, note_text
from .release_view import (
    due_lines,
    due_release,
    print_release,
    release_json,
    state_word,
    switch_label,
)
from .switch_cmds import (
    action_title,
    confirm,
    json_option,
    node_table,
    require_all,
    timeout_option,
)
from .timefmt import local_time, when
from .watch_cmds import case_unwatch, case_watch


@click.group(help=N_("Cases: one investigation, its recipients, its key split and its stores."))
def case() -> None:
    pass


def _cards(ctx: Ctx, aliases: tuple[str, ...], kind: str) -> list[Card]:
    """vault/caseplan.py's contact_cards, for this home (kept for the callers of this name)."""
    return contact_cards(ctx.state, aliases, kind)


def build_switch(ctx: Ctx, *args: Any, **kwargs: Any) -> Switch:
    """vault/caseplan.py's build_switch, for this home (kept for the callers of this name)."""
    return caseplan.build_switch(ctx.state, *args, **kwargs)


INVITE_OPTION = click.option(
    "--invite",
    "invites",
    multiple=True,
    metavar="NODE",
    help=N_(
        "Node (contact alias) whose invitation code you have; asked for without echo "
        "(or read one per line from standard input); repeat per node."
    ),
)


def read_invitations(ctx: Ctx, aliases: tuple[str, ...], nodes: list[Card]) -> dict[str, str]:
    """Invitation codes by node fingerprint (docs/guide-reporter.md, "Invitations").

    Codes are secrets, so never taken from the command line (shell history, `ps`): asked for
    without echo on a terminal, otherwise read one per line from standard input in the order
    of the --invite options. They are kept in memory only."""
    out: dict[str, str] = {}
    fps = {c.fingerprint for c in nodes}
    for alias in aliases:
        card = _cards(ctx, (alias,), "node")[0]
        if card.fingerprint not in fps:
            raise PolicyError(
                N_("node %(alias)s does not hold a share of this case"),
                hint=N_("--invite takes a node also given with --node"),
                alias=alias,
            )
        if sys.stdin.isatty():
            code = click.prompt(
                _("Invitation code for node %(alias)s") % {"alias": alias},
                hide_input=True,
                err=True,
            )
        else:
            code = sys.stdin.readline()
            if not code:
                raise PolicyError(
                    N_("no invitation code for node %(alias)s on standard input"),
                    hint=N_("give one code per line, in the order of the --invite options"),
                    alias=alias,
                )
        out[card.fingerprint] = str(code).strip()
    return out


def print_arm(rep: ArmReport, as_json: bool) -> None:
    if as_json:
        emit_json(rep.to_json())
        return
    table = wrapping_table(
        _("node"),
        _("registration"),
        _("detail"),
        title=_("%(case)s: nodes") % {"case": rep.case},
        title_justify="left",
    )
    for fp, (st, detail) in rep.regs.items():
        table.add_row(rep.names.get(fp, fp), state_word(st), detail or "")
    out_console().print(table)


def finish_arming(rep: ArmReport) -> None:
    if rep.armed:
        click.echo(
            _("Case %(case)s is armed at all %(n)d nodes.")
            % {"case": rep.case, "n": len(rep.regs)},
            err=True,
        )
        return
    bad = [
        f"{rep.names.get(fp, fp)} {state_word(st)}" + (f" ({d})" if d else "")
        for fp, (st, d) in rep.regs.items()
        if st != "registered"
    ]
    ok = sum(1 for st, _d in rep.regs.values() if st == "registered")
    hint = N_("run 'velador case arm %(case)s' to finish when the node is back")
    if rep.needs_invite:
        hint = N_(
            "ask the operator of %(nodes)s for an invitation code, then "
            "run 'velador case arm %(case)s --invite NODE'"
        )
    # CLI-only: the nodes' states are in the reader's language.
    raise NodeError(
        N_("case %(case)s is NOT armed: %(ok)d of %(total)d nodes have it; %(nodes_bad)s"),
        hint=hint,
        case=rep.case,
        ok=ok,
        total=len(rep.regs),
        nodes_bad="; ".join(bad),
        nodes=", ".join(rep.needs_invite),
    )


@case.command(
    "create",
    help=N_(
        "Create case NAME: make its key, split it, seal the shares, register them "
        "at the nodes.\n\n"
        "The case key is erased from this machine afterwards. Run again (or "
        "'velador case arm NAME') to finish a registration that a node refused or "
        "could not receive."
    ),
)
@click.argument("name")
@click.option(
    "--recipient",
    "recipients",
    multiple=True,
    required=True,
    help=N_("Outlet allowed to recover (contact alias); repeat for several."),
)
@click.option(
    "--node",
    "nodes",
    multiple=True,
    help=N_("Escrow node that holds one share (contact alias from 'velador node card'); repeat."),
)
@click.option("--threshold", type=int, help=N_("Shares needed to recover (K)."))
@click.option(
    "--shares",
    type=int,
    help=N_("Shares made (N); with --node the default is one per node, extra ones go offline."),
)
@click.option("--groups", help=N_("Two-level split instead, e.g. '2of3,1of2' (K of N per group)."))
@click.option("--group-threshold", type=int, help=N_("Groups needed with --groups (default: all)."))
@click.option(
    "--editor",
    "editors",
    multiple=True,
    help=N_("Editor who may request a release (contact alias); repeat for several."),
)
@click.option(
    "--editor-quorum",
    type=int,
    help=N_("Editors who must request a release before it happens (default: all of them)."),
)
@click.option(
    "--objection-window",
    help=N_("Time you have to object to an editor release, e.g. 12h (default 1d)."),
)
@click.option(
    "--every", help=N_("Check in at least this often, e.g. 3d (durations: 90s, 36h, 2w).")
)
@click.option("--grace", help=N_("Time after a missed deadline before the nodes release, e.g. 1d."))
@click.option("--remind", help=N_("Reminders before each deadline, comma-separated, e.g. 12h,2h."))
@click.option(
    "--duress",
    type=click.Choice(["alert", "release"]),
    default="alert",
    show_default=True,
    help=N_("What a check-in with the duress passphrase does: alert editors, or release at once."),
)
@click.option(
    "--drill-every",
    help=N_(
        "Run a drill (simulacro) of the whole release path this often, e.g. 90d (at least 1d)."
    ),
)
@click.option(
    "--offline-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help=N_("Folder for the share files you keep offline (USB stick, printout)."),
)
@INVITE_OPTION
@click.option(
    "--store",
    "stores",
    multiple=True,
    help=N_("Where ciphertext goes: file:///path or s3://bucket/prefix; repeat to replicate."),
)
@timeout_option
@json_option
@click.pass_obj
def case_create(
    ctx: Ctx,
    name: str,
    recipients: tuple[str, ...],
    nodes: tuple[str, ...],
    threshold: int | None,
    shares: int | None,
    groups: str | None,
    group_threshold: int | None,
    editors: tuple[str, ...],
    editor_quorum: int | None,
    objection_window: str | None,
    every: str | None,
    grace: str | None,
    remind: str | None,
    duress: str,
    drill_every: str | None,
    offline_dir: Path | None,
    stores: tuple[str, ...],
    invites: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    try:
        existing = ctx.state.case(name)
    except NotFoundError:
        existing = None
    if existing is not None:
        if arming_state(ctx.state, existing) != "arming":
            raise PolicyError(N_("a case named %(name)r already exists"), name=name)
        click.echo(
            _("Case %(case)s exists and is not armed yet; finishing its registration.")
            % {"case": name},
            err=True,
        )
        codes = read_invitations(ctx, invites, list(existing.policy.nodes))
        rep = arm(ctx.state, ctx.unlock(), existing, ctx.clock, timeout, codes)
        print_arm(rep, as_json)
        finish_arming(rep)
        return
    switch = None
    node_cards = _cards(ctx, nodes, "node")
    if node_cards:
        switch = build_switch(
            ctx, editors, editor_quorum, objection_window, every, grace, remind, duress
        )
        if shares is None and not groups:
            shares = len(node_cards)
        if drill_every:
            from .drill_cmds import drill_interval

            switch = dataclasses.replace(switch, drill_every=drill_interval(drill_every))
    elif editors or every or grace or remind or editor_quorum or objection_window or drill_every:
        raise PolicyError(
            N_("deadlines and editors need escrow nodes"), hint=N_("add --node ALIAS for each node")
        )
    spec = share_spec(threshold, shares, groups, group_threshold)
    cards = _cards(ctx, recipients, "recipient")
    codes = read_invitations(ctx, invites, node_cards)
    store_urls = list(stores) or [f"file://{(ctx.home / 'store').resolve()}"]
    ident = ctx.unlock()
    new = create_case(
        ctx.state,
        ident,
        name,
        cards,
        spec,
        store_urls,
        ctx.clock,
        nodes=node_cards,
        switch=switch,
        s3_endpoint=ctx.s3_endpoint,
        offline_dir=offline_dir,
    )
    register_locally(ctx.state, ident, name, new, {"offline_dir": str(offline_dir or "")})
    info = {
        "case": name,
        "case_id": new.policy.case_id,
        "policy_hash": new.policy.hash,
        "split": spec.describe(),
        "recipients": list(recipients),
        "nodes": list(nodes),
        "stores": store_urls,
        "share_files": [str(p) for p in new.offline_files],
    }
    rep = None
    if node_cards:
        mark_arming(ctx.state, new.policy, ctx.clock.now())  # durable before any node is asked
        rep = arm(ctx.state, ident, ctx.state.case(name), ctx.clock, timeout, codes)
        info["armed"] = rep.armed
        info["node_states"] = rep.to_json()["nodes"]
    if as_json:
        emit_json(info)
    else:
        click.echo(
            _("Created case %(case)s (%(case_id)s); key split %(split)s.")
            % {
                "case": name,
                "case_id": new.policy.case_id,
                "split": note_text(split_note(spec)),
            },
            err=True,
        )
        for p in new.offline_files:
            click.echo(_("  share file: %(path)s") % {"path": p}, err=True)
        click.echo(
            _("The case key was erased from this machine: deposits need only its public half."),
            err=True,
        )
        if rep is not None:
            print_arm(rep, False)
    if rep is not None:
        finish_arming(rep)


@case.command("arm", help=N_("Finish registering case NAME at the nodes that do not have it yet."))
@click.argument("name")
@INVITE_OPTION
@timeout_option
@json_option
@click.pass_obj
def case_arm(ctx: Ctx, name: str, invites: tuple[str, ...], timeout: float, as_json: bool) -> None:
    rec = ctx.state.case(name)
    codes = read_invitations(ctx, invites, list(rec.policy.nodes))
    if arming_state(ctx.state, rec) == "armed":
        rep = ArmReport(
            rec.name,
            rec.case_id,
            [],
            ctx.state.node_regs(rec.policy),
            {c.fingerprint: c.name for c in rec.policy.nodes},
        )
    else:
        rep = arm(ctx.state, ctx.unlock(), rec, ctx.clock, timeout, codes)
    print_arm(rep, as_json)
    finish_arming(rep)


@case.command(
    "card",
    help=N_("Print the one line your recipient outlets need to recover CASE (ids, nodes, stores)."),
)
@click.argument("name")
@json_option
@click.pass_obj
def case_card(ctx: Ctx, name: str, as_json: bool) -> None:
    rec = ctx.state.case(name)
    line = make_case_card(rec.policy)
    if as_json:
        emit_json(
            {
                "case_card": line,
                "case_id": rec.case_id,
                "policy_hash": rec.policy.hash,
                "nodes": [
                    {"name": c.name, "fingerprint": c.fingerprint, "url": c.url}
                    for c in rec.policy.nodes
                ],
                "stores": list(rec.policy.stores),
            }
        )
        return
    click.echo(line)


@case.command(
    "destroy",
    help=N_(
        "Destroy CASE at every node: they delete their shares and never release "
        "anything.\n\n"
        "Your stores keep the ciphertext, which nobody can open once the shares are "
        "gone."
    ),
)
@click.argument("name")
@click.option("--yes", is_flag=True, help=N_("Do not ask for confirmation."))
@timeout_option
@json_option
@click.pass_obj
def case_destroy(ctx: Ctx, name: str, yes: bool, timeout: float, as_json: bool) -> None:
    rec = ctx.state.case(name)
    confirm("destroy", name, yes)
    results = act(ctx.state, ctx.unlock(), ctx.clock, rec, "destroy", timeout=timeout)
    if as_json:
        emit_json(
            {"case": rec.name, "case_id": rec.case_id, "nodes": [r.to_json() for r in results]}
        )
    else:
        out_console().print(node_table(action_title("destroy", rec.name), results, ctx.clock.now()))
    require_all("destroy", results, rec.name)
    if not as_json:
        click.echo(_("Case %(case)s is destroyed at every node.") % {"case": name}, err=True)


def case_info(rec: CaseRecord, ctx: Ctx) -> dict[str, object]:
    p = rec.policy
    snaps = ctx.state.snapshots(p.case_id)
    return {
        "case": rec.name,
        "case_id": p.case_id,
        "created": iso(rec.created),
        "status": rec.status,
        "switch": arming_state(ctx.state, rec),
        "release": release_json(known_release(rec)),
        "policy_hash": p.hash,
        "split": p.spec.describe(),
        "recipients": [f"{c.name} ({c.fingerprint})" for c in p.recipients],
        "holders": [f"{h.id}: {h.kind}" + (f" {h.node.name}" if h.node else "") for h in p.holders],
        "stores": list(p.stores),
        "snapshots": len(snaps),
        "last_deposit": iso(snaps[-1]["created"]) if snaps else None,
    }


@case.command("list", help=N_("List your cases."))
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def case_list(ctx: Ctx, as_json: bool) -> None:
    rows = [case_info(r, ctx) for r in ctx.state.cases()]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(_("No cases yet. Create one with 'velador case create NAME ...'."), err=True)
        return
    table = wrapping_table(
        _("case"), _("id"), _("split"), _("switch"), _("snapshots"), _("last deposit")
    )
    recs = {r.name: r for r in ctx.state.cases()}
    now = ctx.clock.now()
    due = {
        rec.name: due_release(ctx.state.node_views(rec.case_id), now)
        for rec in recs.values()
        if rec.status == "active" and known_release(rec) is None
    }
    for r in rows:
        rec = recs[str(r["case"])]
        label = switch_label(known_release(rec), str(r["switch"]))
        if due.get(rec.name):
            label = _("%(label)s, release time passed") % {"label": label}
        table.add_row(
            rec.name,
            rec.case_id,
            note_text(split_note(rec.policy.spec)),
            label,
            str(r["snapshots"]),
            _last_deposit(ctx, str(r["case_id"]), now),
        )
    con = out_console()
    con.print(table)
    for rec in recs.values():  # the table says RELEASED; these lines say when, why, what next
        print_release(con, rec.name, known_release(rec), now)
        if when_due := due.get(rec.name):
            for line in due_lines(rec.name, when_due, now):
                con.print(line, markup=False, highlight=False)


def _last_deposit(ctx: Ctx, case_id: str, now: int) -> str:
    """Local time and age of the newest snapshot (UTC stays for --json)."""
    last = ctx.state.last_snapshot(case_id)
    return when(last["created"], now) if last else "-"


@case.command("show", help=N_("Show one case: split, recipients, holders, stores, snapshots."))
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def case_show(ctx: Ctx, name: str, as_json: bool) -> None:
    rec = ctx.state.case(name)
    if as_json:
        emit_json(case_info(rec, ctx))
        return
    now = ctx.clock.now()
    p = rec.policy
    last = ctx.state.last_snapshot(p.case_id)
    single = [
        (N_("case"), rec.name),
        (N_("case id"), p.case_id),
        (N_("created"), local_time(rec.created, now)),
        (N_("status"), state_word(rec.status)),
        (N_("switch"), switch_label(known_release(rec), arming_state(ctx.state, rec))),
        (N_("policy hash"), p.hash),
        (N_("split"), note_text(split_note(p.spec))),
        (N_("snapshots"), str(len(ctx.state.snapshots(p.case_id)))),
        (N_("last deposit"), when(last["created"], now) if last else "-"),
    ]
    lists = [
        (N_("recipients"), [f"{c.name} ({c.fingerprint})" for c in p.recipients]),
        (N_("holders"), [_holder(h) for h in p.holders]),
        (N_("stores"), list(p.stores)),
    ]
    width = max(14, *(len(_(label)) + 1 for label, _v in single))
    con = out_console()
    for label, value in single:
        con.print(f"{_(label):{width}} {value}", markup=False, highlight=False)
    for label, values in lists:
        con.print(_("%(label)s:") % {"label": _(label)}, markup=False, highlight=False)
        for v in values:
            con.print(f"  {v}", markup=False, highlight=False)
    print_release(con, rec.name, known_release(rec), now)


HOLDER_KINDS = {
    "node": N_("%(id)s: node %(node)s"),
    "offline": N_("%(id)s: offline share file"),
}
"""Who keeps one share of the key (vault.policy.Holder), as `case show` says it."""


def _holder(h: Any) -> str:
    template = HOLDER_KINDS.get(h.kind)
    if template is None:
        return f"{h.id}: {h.kind}"
    return _(template) % {"id": h.id, "node": h.node.name if h.node else "?"}


@case.command(
    "rotate",
    help=N_(
        "Give CASE a new key: split it again, replace the shares at every node.\n\n"
        "Deposits made before stay readable after a release: the previous policy "
        "and its sealed shares are stored, encrypted to the new key, beside the "
        "data (a keyring). The next deposit uploads your files again under the new "
        "key. A node that cannot be reached keeps the previous version (your "
        "check-ins still reach it) until '--resume' or 'velador case arm'."
    ),
)
@click.argument("name")
@click.option(
    "--offline-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help=N_("Folder for the new offline share files (destroy the old ones)."),
)
@click.option("--yes", is_flag=True, help=N_("Do not ask for confirmation."))
@click.option(
    "--resume",
    is_flag=True,
    help=N_(
        "Make no new key: finish the last rotation at the nodes that missed it "
        "(the same as 'velador case arm')."
    ),
)
@timeout_option
@json_option
@click.pass_obj
def case_rotate(
    ctx: Ctx,
    name: str,
    offline_dir: Path | None,
    yes: bool,
    resume: bool,
    timeout: float,
    as_json: bool,
) -> None:
    from vault.case import rotate_and_register

    if resume:
        click.get_current_context().invoke(case_arm, name=name, timeout=timeout, as_json=as_json)
        return
    ctx.state.case(name)
    confirm("rotate", name, yes)
    ident = ctx.unlock()
    rot, rep = rotate_and_register(
        ctx.state,
        ident,
        name,
        ctx.clock,
        timeout,
        offline_dir=offline_dir,
        s3_endpoint=ctx.s3_endpoint,
    )
    info = {
        "case": name,
        "case_id": rot.new.policy.case_id,
        "policy_hash": rot.new.policy.hash,
        "replaces": rot.old.hash,
        "keyring": rot.keyring_key,
        "share_files": [str(p) for p in rot.new.offline_files],
        "armed": rep.armed if rep else None,
    }
    if as_json:
        emit_json(info)
    else:
        click.echo(
            _("Case %(case)s has a new key (policy %(policy)s).")
            % {"case": name, "policy": rot.new.policy.hash[:16]},
            err=True,
        )
        click.echo(
            _("Keyring for earlier deposits written to every store: %(key)s")
            % {"key": rot.keyring_key},
            err=True,
        )
        for p in rot.new.offline_files:
            click.echo(
                _("  new share file: %(path)s (destroy the old share files)") % {"path": p},
                err=True,
            )
        if rep is not None:
            print_arm(rep, False)
    if rep is not None:
        finish_arming(rep)


# Watched folders (cli/watch_cmds.py): what `velador agent` deposits by itself.
case.add_command(case_watch)
case.add_command(case_unwatch)
