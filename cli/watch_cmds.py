"""`velador case watch | unwatch`: the folders a case protects without being remembered.

The list is kept in the local state with each path sealed to the owner's key (vault/watches.py),
so these commands ask for the passphrase; `velador agent` deposits the folders once unlocked.
`freshness_lines` gives `velador status` one line per watched folder: how old its newest
escrowed copy is, and a warning past the limit set with `--max-age`.
"""

from __future__ import annotations

from pathlib import Path

import click

from vault.durations import human, parse_duration
from vault.identity import Identity
from vault.state import CaseRecord, LocalState
from vault.watches import Watch, add_watch, remove_watch, watches

from .context import Ctx, emit_json


def _age(w: Watch, now: int) -> str:
    if w.escrowed is None:
        return "not escrowed yet"
    return f"newest escrowed copy {human(max(0, now - w.escrowed))} old"


def _label(w: Watch) -> str:
    return f"folder #{w.watch_id}" + (f" ({w.path})" if w.path is not None else "")


def freshness_lines(
    state: LocalState, rec: CaseRecord, now: int, identity: Identity | None = None
) -> list[str]:
    """Lines for `velador status`: each watched folder of `rec`, its age, a warning if too old.

    Without `identity` folders are shown by number (their paths are sealed)."""
    lines = []
    for w in watches(state, rec.case_id, identity):
        line = f"{rec.name}: watched {_label(w)}: {_age(w, now)}"
        if w.max_age is not None:
            line += f" (limit {human(w.max_age)})"
        lines.append(line)
        if w.max_age is not None and (w.escrowed is None or now - w.escrowed > w.max_age):
            lines.append(
                f"warning: {rec.name}: the escrowed copy of {_label(w)} is older than "
                f"{human(w.max_age)}; is 'velador agent' running and unlocked?"
            )
    return lines


def _to_json(w: Watch, now: int) -> dict[str, object]:
    return {
        "id": w.watch_id,
        "path": str(w.path) if w.path is not None else None,
        "max_age": w.max_age,
        "escrowed": w.escrowed,
        "age": None if w.escrowed is None else now - w.escrowed,
    }


@click.command("watch")
@click.argument("case_name", metavar="CASE")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--max-age",
    help="Warn in 'velador status' when the newest escrowed copy is older than this, e.g. 1d.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def case_watch(
    ctx: Ctx, case_name: str, paths: tuple[Path, ...], max_age: str | None, as_json: bool
) -> None:
    """Protect folders: the agent deposits them into CASE when they change. Lists them without PATH.

    The paths are stored sealed to your key; the running agent needs 'velador agent unlock'."""
    rec = ctx.state.case(case_name)
    limit = parse_duration(max_age, "--max-age") if max_age else None
    ident = ctx.unlock()
    now = ctx.clock.now()
    for p in paths:
        w, new = add_watch(ctx.state, ident, rec.case_id, p, limit, now)
        if not as_json:
            verb = "Now watching" if new else "Already watching"
            click.echo(f"{verb} {w.path} for {rec.name} (folder #{w.watch_id}).", err=True)
    found = watches(ctx.state, rec.case_id, ident)
    if as_json:
        emit_json([_to_json(w, now) for w in found])
        return
    if not paths:
        if not found:
            click.echo(
                f"{rec.name} watches no folder. Add one: 'velador case watch {rec.name} PATH'.",
                err=True,
            )
        for w in found:
            limit_text = f"; limit {human(w.max_age)}" if w.max_age is not None else ""
            click.echo(f"#{w.watch_id}  {w.path}  ({_age(w, now)}{limit_text})")
    elif found:
        click.echo(
            "The running agent deposits them once unlocked ('velador agent unlock').", err=True
        )


@click.command("unwatch")
@click.argument("case_name", metavar="CASE")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_obj
def case_unwatch(ctx: Ctx, case_name: str, paths: tuple[Path, ...]) -> None:
    """Stop protecting folders of CASE. What was deposited stays in escrow."""
    rec = ctx.state.case(case_name)
    ident = ctx.unlock()
    for p in paths:
        w = remove_watch(ctx.state, ident, rec.case_id, p)
        click.echo(f"No longer watching {w.path} for {rec.name}.", err=True)
