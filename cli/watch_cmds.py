"""`velador case watch | unwatch`: the folders a case protects without being remembered.

The list is kept in the local state with each path sealed to the owner's key (vault/watches.py),
so these commands ask for the passphrase; `velador agent` deposits the folders once unlocked.
`freshness_lines` gives `velador status` one line per watched folder: how old its newest
escrowed copy is, and a warning past the limit set with `--max-age`.
"""

from __future__ import annotations

from pathlib import Path

import click

from vault.durations import parse_duration
from vault.errors import N_
from vault.identity import Identity
from vault.state import CaseRecord, LocalState
from vault.watches import Watch, add_watch, remove_watch, watches

from .context import Ctx, emit_json
from .i18n import _
from .timefmt import span


def _age(w: Watch, now: int) -> str:
    if w.escrowed is None:
        return _("not escrowed yet")
    return _("newest escrowed copy %(age)s old") % {"age": span(max(0, now - w.escrowed))}


def _label(w: Watch) -> str:
    if w.path is None:
        return _("folder #%(id)s") % {"id": w.watch_id}
    return _("folder #%(id)s (%(path)s)") % {"id": w.watch_id, "path": w.path}


def freshness_lines(
    state: LocalState, rec: CaseRecord, now: int, identity: Identity | None = None
) -> list[str]:
    """Lines for `velador status`: each watched folder of `rec`, its age, a warning if too old.

    Without `identity` folders are shown by number (their paths are sealed)."""
    lines = []
    for w in watches(state, rec.case_id, identity):
        values = {"case": rec.name, "folder": _label(w), "age": _age(w, now)}
        if w.max_age is not None:
            line = _("%(case)s: watched %(folder)s: %(age)s (limit %(limit)s)") % {
                **values,
                "limit": span(w.max_age),
            }
        else:
            line = _("%(case)s: watched %(folder)s: %(age)s") % values
        lines.append(line)
        if w.max_age is not None and (w.escrowed is None or now - w.escrowed > w.max_age):
            lines.append(
                _(
                    "warning: %(case)s: the escrowed copy of %(folder)s is older than "
                    "%(limit)s; is 'velador agent' running and unlocked?"
                )
                % {**values, "limit": span(w.max_age)}
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


@click.command(
    "watch",
    help=N_(
        "Protect folders: the agent deposits them into CASE when they change. Lists them "
        "without PATH.\n\n"
        "The paths are stored sealed to your key; the running agent needs 'velador agent unlock'."
    ),
)
@click.argument("case_name", metavar="CASE")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--max-age",
    help=N_("Warn in 'velador status' when the newest escrowed copy is older than this, e.g. 1d."),
)
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def case_watch(
    ctx: Ctx, case_name: str, paths: tuple[Path, ...], max_age: str | None, as_json: bool
) -> None:
    """`velador case watch` (help text above)."""
    rec = ctx.state.case(case_name)
    limit = parse_duration(max_age, "--max-age") if max_age else None
    ident = ctx.unlock()
    now = ctx.clock.now()
    for p in paths:
        w, new = add_watch(ctx.state, ident, rec.case_id, p, limit, now)
        if not as_json:
            text = (
                _("Now watching %(path)s for %(case)s (folder #%(id)s).")
                if new
                else _("Already watching %(path)s for %(case)s (folder #%(id)s).")
            )
            click.echo(text % {"path": w.path, "case": rec.name, "id": w.watch_id}, err=True)
    found = watches(ctx.state, rec.case_id, ident)
    if as_json:
        emit_json([_to_json(w, now) for w in found])
        return
    if not paths:
        if not found:
            click.echo(
                _("%(case)s watches no folder. Add one: 'velador case watch %(case)s PATH'.")
                % {"case": rec.name},
                err=True,
            )
        for w in found:
            values = {"id": w.watch_id, "path": w.path, "age": _age(w, now)}
            if w.max_age is not None:
                text = _("#%(id)s  %(path)s  (%(age)s; limit %(limit)s)") % {
                    **values,
                    "limit": span(w.max_age),
                }
            else:
                text = f"#{w.watch_id}  {w.path}  ({values['age']})"
            click.echo(text)
    elif found:
        click.echo(
            _("The running agent deposits them once unlocked ('velador agent unlock')."),
            err=True,
        )


@click.command(
    "unwatch", help=N_("Stop protecting folders of CASE. What was deposited stays in escrow.")
)
@click.argument("case_name", metavar="CASE")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_obj
def case_unwatch(ctx: Ctx, case_name: str, paths: tuple[Path, ...]) -> None:
    """`velador case unwatch` (help text above)."""
    rec = ctx.state.case(case_name)
    ident = ctx.unlock()
    for p in paths:
        w = remove_watch(ctx.state, ident, rec.case_id, p)
        click.echo(
            _("No longer watching %(path)s for %(case)s.") % {"path": w.path, "case": rec.name},
            err=True,
        )
