"""`velador inbox` (recipient outlets, editors, reporters) and `velador release request` (editors).

Both talk to escrow nodes only (docs/protocol.md §4.5, §8.2): every request is signed with the
caller's identity and every notice or receipt is checked against the node's card key before it
is shown. The inbox keeps a durable "seen" cursor per node in local state (table inbox_cursor),
moved only after the notices were printed, so a crash shows a notice twice rather than never.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import click

from vault.cards import Card
from vault.clock import iso
from vault.errors import (
    AuthenticationError,
    NodeError,
    NotFoundError,
    PolicyError,
    VeladorError,
)
from vault.netrecover import DEFAULT_TIMEOUT, case_ref
from vault.state import LocalState
from vault.switch import fan_out

from .context import Ctx, emit_json, out_console

if TYPE_CHECKING:
    from vault.nodeproto.client import NodeClient

PAGE = 100
MAX_PAGES = 50  # 5000 notices per node and run; the rest come on the next run

TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(0.5, 600),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each escrow node before naming it unreachable.",
)


def known_nodes(ctx: Ctx) -> list[tuple[str, Card]]:
    return [(alias, card) for alias, card in ctx.state.contacts() if card.role == "node"]


# --- inbox -------------------------------------------------------------------------------------


def _cursor(state: LocalState, node_fp: str) -> int:
    row = state.db.execute("SELECT seen FROM inbox_cursor WHERE node = ?", [node_fp]).fetchone()
    return int(row[0]) if row else 0


def _save_cursor(state: LocalState, node_fp: str, seen: int, now: int) -> None:
    with state.tx():
        state.db.execute(
            "INSERT INTO inbox_cursor (node, seen, updated) VALUES (?, ?, ?) "
            "ON CONFLICT(node) DO UPDATE SET seen = max(seen, excluded.seen), "
            "updated = excluded.updated",
            [node_fp, seen, now],
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (for scripts).")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Show every notice the nodes still hold, not only new ones (marks nothing as seen).",
)
@TIMEOUT
@click.pass_obj
def inbox(ctx: Ctx, as_json: bool, show_all: bool, timeout: float) -> None:
    """Notices addressed to you (releases, alerts, reminders) from the nodes in your contacts.

    Each notice is signed by its node and checked before it is shown. Notices are shown once:
    the next run shows only newer ones (use --all to see them again).
    """
    nodes = known_nodes(ctx)
    if not nodes:
        raise NotFoundError(
            "you know no escrow node to ask for notices",
            hint="add the case's nodes: velador contact add NODE_CARD --alias NAME",
        )
    ident = ctx.unlock()
    me = ident.card.fingerprint
    after = {c.fingerprint: 0 if show_all else _cursor(ctx.state, c.fingerprint) for _, c in nodes}

    def fetch(client: NodeClient) -> dict[str, Any]:
        last, mine = after[client.card.fingerprint], []
        for _ in range(MAX_PAGES):
            page = client.inbox(after=last, limit=PAGE)
            for item in page:
                last = max(last, int(item["id"]))
                if item["notice"].get("party") == me:  # one for someone else is a node bug
                    mine.append(item["notice"])
            if len(page) < PAGE:
                break
        return {"last": last, "notices": mine}

    answers = fan_out([c for _, c in nodes], ident, ctx.clock, fetch, timeout)
    aliases = [alias for alias, _ in nodes]
    failed = [(alias, a) for alias, a in zip(aliases, answers, strict=True) if not a.ok]
    rows = sorted(
        (
            {"node_alias": alias, **n}
            for alias, a in zip(aliases, answers, strict=True)
            for n in (a.body or {}).get("notices", [])
        ),
        key=lambda n: (n.get("time", 0), n.get("node_alias", "")),
    )
    from .context import default_home
    from .inbox_view import Names, group, home_args

    events = group(rows)
    names = Names(
        ctx.state.contacts(),
        {r.case_id: r.name for r in ctx.state.cases()},
        home_args(ctx.home, default_home()),
    )
    if as_json:
        emit_json(
            {
                "notices": rows,
                "events": [_event_json(ev, names) for ev in events],
                "unreachable": [{"node": alias, "error": str(a.error)} for alias, a in failed],
            }
        )
    else:
        for _, a in failed:
            click.echo(f"velador: warning: {a.error}; its notices come on the next run", err=True)
        _print_events(events, names, show_all)
    if not show_all:
        for a in answers:
            if a.ok and a.body and a.body["last"] > after[a.fingerprint]:
                _save_cursor(ctx.state, a.fingerprint, a.body["last"], ctx.clock.now())
    if len(failed) == len(answers):
        raise NodeError(
            f"none of your {len(answers)} node(s) could be asked for notices: "
            + "; ".join(str(a.error) for _, a in failed),
            hint="check your network connection (or Tor), then run 'velador inbox' again",
        )


def _event_json(ev: Any, names: Any) -> dict[str, Any]:
    from .inbox_view import describe

    line, next_cmd = describe(ev, names)
    return {
        "case_id": ev.case_id,
        "event": ev.event,
        "time": ev.time,
        "nodes": ev.nodes,
        "text": line,
        "next": next_cmd,
    }


def _print_events(events: list[Any], names: Any, show_all: bool) -> None:
    """One line per event (the notices of all nodes that report it), then what to run."""
    from .inbox_view import describe

    if not events:
        click.echo("No new notices." if not show_all else "No notices.", err=True)
        return
    con = out_console()
    for ev in events:
        line, next_cmd = describe(ev, names)
        con.print(f"{iso(ev.time)}  {line}", markup=False)
        if next_cmd:
            con.print(f"    next: {next_cmd}", markup=False)


# --- release request ---------------------------------------------------------------------------


@dataclass
class _Asked:
    """One node's answer to a release request, as the editor should read it."""

    card: Card
    outcome: str
    detail: str = ""
    receipt: dict[str, Any] | None = None

    @classmethod
    def of(cls, card: Card, error: VeladorError | None, body: dict[str, Any] | None) -> _Asked:
        if error is None:
            return cls(card, "accepted", receipt=body)
        detail = error.message.removeprefix(f"node {card.name}: ")
        if isinstance(error, NotFoundError):
            return cls(card, "does not hold the case")
        if isinstance(error, PolicyError):
            forbidden = getattr(error, "code", None) == "forbidden"
            return cls(card, "refused" if forbidden else "not accepted", detail)
        if isinstance(error, NodeError):
            return cls(card, "unreachable", detail)
        if isinstance(error, AuthenticationError):
            return cls(card, "not verified", detail)
        return cls(card, "failed", detail)


@click.command("request")
@click.argument("case", metavar="CASE_CARD_OR_ID")
@click.option(
    "--reason-file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="Read why you ask from this file ('-' for standard input); sent to the nodes with "
    "your request. Without it you are asked in the terminal.",
)
@click.option(
    "--reason",
    default=None,
    help="Why you ask, given on the command line (it stays in your shell history and is "
    "visible to other programs while it runs: prefer --reason-file or the prompt).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@TIMEOUT
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
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
    """Editors: ask every node of CASE to release it (counts toward the editor quorum).

    When the quorum the reporter set is reached, the objection window opens; if the reporter
    does not object in time, the nodes release the case to the recipient outlets.
    """
    reason = _release_reason(reason_file, reason)
    ref = case_ref(case, [card for _, card in known_nodes(ctx)])
    _confirm_request(ref.case_id, len(ref.nodes), yes)
    ident = ctx.unlock()

    answers = fan_out(
        ref.nodes, ident, ctx.clock, lambda c: c.release_request(ref.case_id, reason), timeout
    )
    results = [_Asked.of(card, a.error, a.body) for card, a in zip(ref.nodes, answers, strict=True)]
    holding = [r for r in results if r.outcome != "does not hold the case"]
    if not holding:
        # A node answers the same for a case it does not hold and for a key the case does not
        # name (docs/protocol.md §2.4), so both are possible here.
        raise NotFoundError(
            f"none of the {len(results)} node(s) asked holds case {ref.case_id}",
            hint="check the case id, or use the case card the reporter gave you; nodes answer "
            "the same way to an editor the reporter did not name (your fingerprint is "
            f"{ident.fingerprint})",
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
        for row in rows:
            when = f", release at {iso(row['release_at'])}" if row["release_at"] else ""
            state = f" (state {row['state']}{when})" if row["state"] else ""
            why = f": {row['detail']}" if row["detail"] else ""
            click.echo(f"  {row['node']:<16} {row['outcome']}{state}{why}", err=True)
    accepted = [r for r in holding if r.outcome == "accepted"]
    if not accepted and all(r.outcome == "refused" for r in holding):
        raise PolicyError(
            f"every node of case {ref.case_id} refused your request: {holding[0].detail}",
            hint=f"only the editors the reporter named may ask; your fingerprint is "
            f"{ident.fingerprint}",
        )
    missed = [r for r in holding if r.outcome != "accepted"]
    if missed:
        names = ", ".join(f"{r.card.name} ({r.outcome})" for r in missed)
        err: type[VeladorError] = (
            NodeError if all(r.outcome == "unreachable" for r in missed) else PolicyError
        )
        raise err(
            f"your request reached {len(accepted)} of the {len(holding)} nodes of case "
            f"{ref.case_id}; not accepted by {names}",
            hint="it counts at the nodes that accepted it; run the command again later",
        )
    if not as_json:
        click.echo(
            f"Release requested at all {len(accepted)} nodes of case {ref.case_id}.", err=True
        )


def _confirm_request(case_id: str, n_nodes: int, yes: bool) -> None:
    """Ask before sending, as `release now` does: a request counts toward a release at once."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise PolicyError(
            "refusing to ask for a release without confirmation",
            hint="add --yes once you are sure of the case id",
        )
    question = (
        f"Send a release request for case {case_id} to {n_nodes} escrow node(s)? It counts "
        "toward a release to the recipient outlets; the reporter can still object in time"
    )
    if not click.confirm(question, default=False, err=True):
        click.echo("Nothing was sent.", err=True)
        raise click.exceptions.Exit(0)


def _release_reason(reason_file: IO[str] | None, reason: str | None) -> str:
    """The editor's reason, from a file, the prompt, or (discouraged) argv.

    The reason says why the editor fears for the reporter ("detained in Culiacán since the
    12th"): on the command line it would stay in shell history and show in `ps` on a machine that
    may be seized, so the file or the prompt is the default way to give it.
    """
    if reason_file is not None and reason is not None:
        raise PolicyError(
            "give the reason once: --reason-file or --reason, not both",
            hint="prefer --reason-file FILE (or '-' for standard input)",
        )
    if reason_file is not None:
        reason = reason_file.read(4096).strip()
    elif reason is None:
        if not sys.stdin.isatty():
            raise PolicyError(
                "say why you ask for the release",
                hint="use --reason-file FILE (or '-' to read standard input), "
                "or run the command in a terminal to be asked",
            )
        reason = click.prompt("Why do you ask for the release", err=True)
    reason = reason.strip()
    if not reason or len(reason) > 1000:
        raise PolicyError(
            "the reason must say why, in 1 to 1000 characters",
            hint="write it in a file and pass --reason-file FILE",
        )
    return reason


def release_group() -> click.Group:
    """The `release` group: the reporter side's (cli.switch_cmds) when present, else our own."""
    try:
        from .switch_cmds import release  # type: ignore[attr-defined]
    except ImportError:

        @click.group("release")
        def release() -> None:
            """Releases: editors request one; reporters release now or object."""

    group: click.Group = release
    if "request" not in group.commands:
        group.add_command(release_request)
    return group
