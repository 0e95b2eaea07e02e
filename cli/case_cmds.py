"""`velador case ...`: create, list and show cases."""

from __future__ import annotations

from pathlib import Path

import click

from vault.case import create_case, register_locally
from vault.clock import iso
from vault.errors import PolicyError
from vault.shares import ShareSpec, parse_groups
from vault.state import CaseRecord

from .context import Ctx, emit_json, out_console


def share_spec(
    threshold: int | None, shares: int | None, groups: str | None, group_threshold: int | None
) -> ShareSpec:
    if groups:
        if threshold or shares:
            raise PolicyError("use either --threshold/--shares or --groups, not both")
        return parse_groups(groups, group_threshold)
    if not threshold or not shares:
        raise PolicyError("say how to split the key", hint="e.g. --threshold 3 --shares 5")
    return ShareSpec(1, ((threshold, shares),))


@click.group()
def case() -> None:
    """Cases: one investigation, its recipients, its key split and its stores."""


@case.command("create")
@click.argument("name")
@click.option(
    "--recipient",
    "recipients",
    multiple=True,
    required=True,
    help="Outlet allowed to recover (contact alias); repeat for several.",
)
@click.option("--threshold", type=int, help="Shares needed to recover (K).")
@click.option("--shares", type=int, help="Shares made (N).")
@click.option("--groups", help="Two-level split instead, e.g. '2of3,1of2' (K of N per group).")
@click.option("--group-threshold", type=int, help="Groups needed with --groups (default: all).")
@click.option(
    "--offline-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the share files of offline holders (USB stick, printout).",
)
@click.option(
    "--store",
    "stores",
    multiple=True,
    help="Where ciphertext goes: file:///path or s3://bucket/prefix; repeat to replicate.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def case_create(
    ctx: Ctx,
    name: str,
    recipients: tuple[str, ...],
    threshold: int | None,
    shares: int | None,
    groups: str | None,
    group_threshold: int | None,
    offline_dir: Path | None,
    stores: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create case NAME: make its key, split it, seal the shares to the recipients, erase it."""
    spec = share_spec(threshold, shares, groups, group_threshold)
    cards = [ctx.state.contact(a) for a in recipients]
    for alias, card in zip(recipients, cards, strict=True):
        if card.role not in ("outlet", "editor"):
            raise PolicyError(
                f"{alias} is a {card.role}, not an outlet", hint="recipients are outlets"
            )
    store_urls = list(stores) or [f"file://{(ctx.home / 'store').resolve()}"]
    ident = ctx.unlock()
    new = create_case(
        ctx.state, ident, name, cards, spec, store_urls, ctx.clock, offline_dir=offline_dir
    )
    register_locally(ctx.state, ident, name, new, {"offline_dir": str(offline_dir or "")})
    info = {
        "case": name,
        "case_id": new.policy.case_id,
        "policy_hash": new.policy.hash,
        "split": spec.describe(),
        "recipients": list(recipients),
        "stores": store_urls,
        "share_files": [str(p) for p in new.offline_files],
    }
    if as_json:
        emit_json(info)
        return
    click.echo(
        f"Created case {name} ({new.policy.case_id}); key split {spec.describe()}.", err=True
    )
    for p in new.offline_files:
        click.echo(f"  share file: {p}", err=True)
    click.echo(
        "The case key was erased from this machine: deposits need only its public half.", err=True
    )


def case_info(rec: CaseRecord, ctx: Ctx) -> dict[str, object]:
    p = rec.policy
    snaps = ctx.state.snapshots(p.case_id)
    return {
        "case": rec.name,
        "case_id": p.case_id,
        "created": iso(rec.created),
        "status": rec.status,
        "policy_hash": p.hash,
        "split": p.spec.describe(),
        "recipients": [f"{c.name} ({c.fingerprint})" for c in p.recipients],
        "holders": [f"{h.id}: {h.kind}" + (f" {h.node.name}" if h.node else "") for h in p.holders],
        "stores": list(p.stores),
        "snapshots": len(snaps),
        "last_deposit": iso(snaps[-1]["created"]) if snaps else None,
    }


@case.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def case_list(ctx: Ctx, as_json: bool) -> None:
    """List your cases."""
    rows = [case_info(r, ctx) for r in ctx.state.cases()]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("No cases yet. Create one with 'velador case create NAME ...'.", err=True)
        return
    from rich.table import Table

    table = Table("case", "id", "split", "snapshots", "last deposit")
    for r in rows:
        table.add_row(
            str(r["case"]),
            str(r["case_id"]),
            str(r["split"]),
            str(r["snapshots"]),
            str(r["last_deposit"] or "-"),
        )
    out_console().print(table)


@case.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def case_show(ctx: Ctx, name: str, as_json: bool) -> None:
    """Show one case: split, recipients, holders, stores, snapshots."""
    info = case_info(ctx.state.case(name), ctx)
    if as_json:
        emit_json(info)
        return
    con = out_console()
    for key, value in info.items():
        if isinstance(value, list):
            con.print(f"{key}:")
            for v in value:
                con.print(f"  {v}")
        else:
            con.print(f"{key:13} {value}")
