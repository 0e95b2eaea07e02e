"""`velador id ...` and `velador contact ...`: who you are and whom you trust."""

from __future__ import annotations

import os

import click

from vault.cards import parse_card
from vault.clock import iso
from vault.identity import create_identity, load_card, set_duress_passphrase

from .context import Ctx, emit_json, get_passphrase, out_console


@click.group("id")
def id_group() -> None:
    """Your identity: signing and encryption keys, protected by a passphrase."""


@id_group.command("new")
@click.option("--name", required=True, help="Your name as partners know it.")
@click.option(
    "--role",
    type=click.Choice(["reporter", "outlet", "editor"]),
    default="reporter",
    show_default=True,
    help="reporter deposits; outlet recovers; editor may request a release.",
)
@click.pass_obj
def id_new(ctx: Ctx, name: str, role: str) -> None:
    """Create a new identity in the home folder."""
    passphrase = get_passphrase("New passphrase", confirm=True)
    ident = create_identity(ctx.home, name, role, passphrase, ctx.clock.now())
    click.echo(f"Created {role} identity for {ident.name}", err=True)
    click.echo(f"Fingerprint: {ident.fingerprint}", err=True)
    click.echo(
        "Share your card with 'velador id card'; partners compare the fingerprint aloud.", err=True
    )


@id_group.command("card")
@click.pass_obj
def id_card(ctx: Ctx) -> None:
    """Print your contact card alone on one line (for pipes and messages)."""
    click.echo(load_card(ctx.home).text)


@id_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def id_show(ctx: Ctx, as_json: bool) -> None:
    """Show name, role, fingerprint and card."""
    card = load_card(ctx.home)
    info = {
        "name": card.name,
        "role": card.role,
        "fingerprint": card.fingerprint,
        "created": iso(card.created),
        "card": card.text,
        "home": str(ctx.home),
    }
    if as_json:
        emit_json(info)
        return
    con = out_console()
    for key in ("name", "role", "fingerprint", "created", "home"):
        con.print(f"{key:12} {info[key]}")
    con.print(f"{'card':12} {card.text}")


@id_group.command("duress")
@click.pass_obj
def id_duress(ctx: Ctx) -> None:
    """Set a duress passphrase: it unlocks normally but makes check-ins raise a silent alarm."""
    current = get_passphrase("Current passphrase")
    # Scripts and tests give it in VELADOR_DURESS_PASSPHRASE; people type it at a hidden prompt.
    duress = os.environ.get("VELADOR_DURESS_PASSPHRASE") or get_passphrase(
        "Duress passphrase", confirm=True, env=None
    )
    set_duress_passphrase(ctx.home, current, duress)
    click.echo(
        "Duress passphrase set. Using it looks normal; your nodes act as your cases say.", err=True
    )


@click.group()
def contact() -> None:
    """People and nodes you work with, by their contact cards."""


@contact.command("add")
@click.argument("card")
@click.option("--alias", required=True, help="Short name to use in other commands.")
@click.pass_obj
def contact_add(ctx: Ctx, card: str, alias: str) -> None:
    """Add a contact from its CARD (compare the fingerprint with its owner first)."""
    parsed = parse_card(card)
    ctx.state.add_contact(alias, parsed, ctx.clock.now())
    click.echo(
        f"Added {alias}: {parsed.name} ({parsed.role}), fingerprint {parsed.fingerprint}", err=True
    )


@contact.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def contact_list(ctx: Ctx, as_json: bool) -> None:
    """List your contacts."""
    rows = [
        {"alias": a, "name": c.name, "role": c.role, "fingerprint": c.fingerprint, "url": c.url}
        for a, c in ctx.state.contacts()
    ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(
            "No contacts yet. Add one with 'velador contact add CARD --alias NAME'.", err=True
        )
        return
    from rich.table import Table

    table = Table("alias", "name", "role", "fingerprint", "url")
    for r in rows:
        table.add_row(r["alias"], r["name"], r["role"], r["fingerprint"], r["url"] or "")
    out_console().print(table)
