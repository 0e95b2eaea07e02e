"""`velador inbox` (recipient outlets, editors, reporters) and `velador release request` (editors).

Both talk to escrow nodes only (docs/protocol.md §4.5, §8.2): every request is signed with the
caller's identity and every notice or receipt is checked against the node's card key before it
is shown. The inbox keeps a durable "seen" cursor per node in local state (table inbox_cursor),
moved only after the notices were printed, so a crash shows a notice twice rather than never.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
from vault.netrecover import DEFAULT_TIMEOUT, MAX_PARALLEL, case_ref
from vault.state import LocalState

from .context import Ctx, emit_json, out_console

PAGE = 100
MAX_PAGES = 50  # 5000 notices per node and run; the rest come on the next run

T = TypeVar("T")

TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(0.5, 600),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each escrow node before naming it unreachable.",
)


def known_nodes(ctx: Ctx) -> list[tuple[str, Card]]:
    return [(alias, card) for alias, card in ctx.state.contacts() if card.role == "node"]


def fan_out(items: list[T], fn: Callable[[T], Any]) -> list[Any]:
    """Run `fn` on every item in parallel threads (one request per node), keeping order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(items))) as pool:
        return list(pool.map(fn, items))


def _client(ctx: Ctx, card: Card, identity: Any, timeout: float) -> Any:
    from escrow_node.client import NodeClient

    return NodeClient(card, identity, ctx.clock, timeout)


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


@dataclass
class _Fetched:
    alias: str
    card: Card
    after: int
    notices: list[dict[str, Any]] = field(default_factory=list)
    last: int = 0
    error: str | None = None


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
    jobs = [
        _Fetched(alias, card, 0 if show_all else _cursor(ctx.state, card.fingerprint))
        for alias, card in nodes
    ]

    def fetch(job: _Fetched) -> _Fetched:
        job.last = job.after
        try:
            with _client(ctx, job.card, ident, timeout) as client:
                for _ in range(MAX_PAGES):
                    page = client.inbox(after=job.last, limit=PAGE)
                    for item in page:
                        job.last = max(job.last, int(item["id"]))
                        body = item["notice"]
                        if body.get("party") == me:  # a notice for someone else is a node bug
                            job.notices.append(body)
                    if len(page) < PAGE:
                        break
        except VeladorError as exc:
            job.error = exc.message
        return job

    done: list[_Fetched] = fan_out(jobs, fetch)
    failed = [j for j in done if j.error is not None]
    rows = sorted(
        ({"node_alias": j.alias, **n} for j in done for n in j.notices),
        key=lambda n: (n.get("time", 0), n.get("node_alias", "")),
    )
    if as_json:
        emit_json(
            {
                "notices": rows,
                "unreachable": [{"node": j.alias, "error": j.error} for j in failed],
            }
        )
    else:
        for j in failed:
            click.echo(f"velador: warning: {j.error}; its notices come on the next run", err=True)
        _print_notices(rows, show_all)
    if not show_all:
        for j in done:
            if j.error is None and j.last > j.after:
                _save_cursor(ctx.state, j.card.fingerprint, j.last, ctx.clock.now())
    if len(failed) == len(done):
        raise NodeError(
            f"none of your {len(done)} node(s) could be asked for notices: "
            + "; ".join(str(j.error) for j in failed),
            hint="check your network connection (or Tor), then run 'velador inbox' again",
        )


def _print_notices(rows: list[dict[str, Any]], show_all: bool) -> None:
    if not rows:
        click.echo("No new notices." if not show_all else "No notices.", err=True)
        return
    con = out_console()
    for n in rows:
        con.print(
            f"{iso(int(n.get('time', 0)))}  {n['node_alias']:<12} case {n.get('case_id')}  "
            f"[bold]{n.get('event')}[/bold] ({n.get('state')})",
            markup=True,
        )
        con.print(f"    {n.get('text', '')}", markup=False)
        if n.get("next"):
            con.print(f"    next: {n['next']}", markup=False)


# --- release request ---------------------------------------------------------------------------


@dataclass
class _Asked:
    card: Card
    receipt: dict[str, Any] | None = None
    outcome: str = ""
    detail: str = ""


@click.command("request")
@click.argument("case", metavar="CASE_CARD_OR_ID")
@click.option(
    "--reason",
    required=True,
    help="Why you ask (e.g. 'detained since 12 Nov'); sent to the nodes with your request.",
)
@TIMEOUT
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def release_request(ctx: Ctx, case: str, reason: str, timeout: float, as_json: bool) -> None:
    """Editors: ask every node of CASE to release it (counts toward the editor quorum).

    When the quorum the reporter set is reached, the objection window opens; if the reporter
    does not object in time, the nodes release the case to the recipient outlets.
    """
    if not reason.strip() or len(reason) > 1000:
        raise PolicyError("--reason must say why, in 1 to 1000 characters")
    ref = case_ref(case, [card for _, card in known_nodes(ctx)])
    ident = ctx.unlock()

    def ask(card: Card) -> _Asked:
        out = _Asked(card)
        try:
            with _client(ctx, card, ident, timeout) as client:
                out.receipt = client.release_request(ref.case_id, reason)
                out.outcome = "accepted"
        except NotFoundError:
            out.outcome = "does not hold the case"
        except PolicyError as exc:
            forbidden = getattr(exc, "code", None) == "forbidden"
            out.outcome = "refused" if forbidden else "not accepted"
            out.detail = exc.message.removeprefix(f"node {card.name}: ")
        except (NodeError, AuthenticationError) as exc:
            out.outcome = "unreachable" if isinstance(exc, NodeError) else "not verified"
            out.detail = exc.message.removeprefix(f"node {card.name}: ")
        except VeladorError as exc:
            out.outcome, out.detail = "failed", exc.message
        return out

    results: list[_Asked] = fan_out(list(ref.nodes), ask)
    holding = [r for r in results if r.outcome != "does not hold the case"]
    if not holding:
        raise NotFoundError(
            f"none of the {len(results)} node(s) asked holds case {ref.case_id}",
            hint="check the case id, or use the case card the reporter gave you",
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
