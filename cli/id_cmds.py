"""`velador id ...` and `velador contact ...`: who you are and whom you trust."""

from __future__ import annotations

from typing import Any

import click

from vault.cards import Card, parse_card
from vault.clock import iso
from vault.errors import N_, FormatError
from vault.identity import (
    IDENTITY_FILE,
    change_passphrase,
    create_identity,
    load_card,
    set_duress_passphrase,
    unlock_identity,
)

from .context import (
    PASSPHRASE_ENV,
    Ctx,
    emit_json,
    get_new_passphrase,
    get_passphrase,
    out_console,
    table,
)
from .i18n import _
from .timefmt import local_time

DURESS_ENV = "VELADOR_DURESS_PASSPHRASE"
NEW_PASSPHRASE_ENV = "VELADOR_NEW_PASSPHRASE"  # noqa: S105 - the name of a variable
FINGERPRINT_WIDTH = 19
"""Characters in a fingerprint (four groups of four and three dashes): its column never folds
narrower than this."""
NARROW = 70
"""Below this many columns the contact list is printed as blocks instead of a table."""

ROLES = {
    "reporter": N_("reporter"),
    "outlet": N_("outlet"),
    "editor": N_("editor"),
    "node": N_("node"),
}
"""A card's role (vault/cards.py), as people read it; --role and --json keep the English."""

LABELS = {
    "name": N_("name"),
    "role": N_("role"),
    "fingerprint": N_("fingerprint"),
    "created": N_("created"),
    "added": N_("added"),
    "home": N_("home"),
    "card": N_("card"),
    "url": N_("url"),
    "cases": N_("cases"),
}
"""The field names `id show` and `contact show` print before each value."""


def role_word(role: str) -> str:
    return _(ROLES[role]) if role in ROLES else role


def print_fields(pairs: list[tuple[str, str]], indent: str = "") -> None:
    """`label  value` lines, the values aligned after the longest label (in either language)."""
    labels = [_(LABELS[k]) for k, _v in pairs]
    width = max([12, *(len(label) + 1 for label in labels)])
    for label, (_k, value) in zip(labels, pairs, strict=True):
        click.echo(f"{indent}{label:{width}} {value}")


@click.group(
    "id", help=N_("Your identity: signing and encryption keys, protected by a passphrase.")
)
def id_group() -> None:
    pass


@id_group.command(
    "new",
    help=N_(
        "Create a new identity in the home folder.\n\n"
        "The passphrase must be hard to guess (several random words); a weak one is "
        "refused with a suggestion."
    ),
)
@click.option("--name", required=True, help=N_("Your name as partners know it."))
@click.option(
    "--role",
    type=click.Choice(["reporter", "outlet", "editor"]),
    default="reporter",
    show_default=True,
    help=N_("reporter deposits; outlet recovers; editor may request a release."),
)
@click.pass_obj
def id_new(ctx: Ctx, name: str, role: str) -> None:
    if (ctx.home / IDENTITY_FILE).exists():  # before asking for a passphrase (issue 12 §9)
        raise FormatError(
            N_("an identity already exists in %(home)s"),
            hint=N_("keep using it, or give another folder with --home to make a second identity"),
            home=str(ctx.home),
        )
    passphrase = get_new_passphrase(N_("New passphrase"), PASSPHRASE_ENV, [name, role])
    ident = create_identity(ctx.home, name, role, passphrase, ctx.clock.now())
    click.echo(
        _("Created %(role)s identity for %(name)s") % {"role": role_word(role), "name": ident.name},
        err=True,
    )
    click.echo(_("Fingerprint: %(fingerprint)s") % {"fingerprint": ident.fingerprint}, err=True)
    click.echo(
        _("Share your card with 'velador id card'; partners compare the fingerprint aloud."),
        err=True,
    )


@id_group.command(
    "card", help=N_("Print your contact card alone on one line (for pipes and messages).")
)
@click.pass_obj
def id_card(ctx: Ctx) -> None:
    click.echo(load_card(ctx.home).text)


@id_group.command("show", help=N_("Show name, role, fingerprint and card."))
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def id_show(ctx: Ctx, as_json: bool) -> None:
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
    print_fields(
        [
            ("name", card.name),
            ("role", role_word(card.role)),
            ("fingerprint", card.fingerprint),
            ("created", local_time(card.created, ctx.clock.now())),
            ("home", str(ctx.home)),
            ("card", card.text),
        ]
    )


@id_group.command(
    "duress",
    help=N_(
        "Set a duress passphrase: it unlocks normally but makes check-ins raise a silent alarm."
    ),
)
@click.pass_obj
def id_duress(ctx: Ctx) -> None:
    current = get_passphrase(N_("Current passphrase"))
    # Scripts and tests give it in VELADOR_DURESS_PASSPHRASE; people type it at a hidden prompt.
    card = load_card(ctx.home)
    duress = get_new_passphrase(N_("Duress passphrase"), DURESS_ENV, [card.name])
    set_duress_passphrase(ctx.home, current, duress)
    click.echo(
        _("Duress passphrase set. Using it looks normal; your nodes act as your cases say."),
        err=True,
    )


@id_group.command(
    "passphrase",
    help=N_(
        "Change the passphrase you unlock with (the new one must be hard to guess).\n\n"
        "Scripts give the current one in VELADOR_PASSPHRASE and the new one in "
        "VELADOR_NEW_PASSPHRASE; people type both at hidden prompts."
    ),
)
@click.pass_obj
def id_passphrase(ctx: Ctx) -> None:
    current = get_passphrase(N_("Current passphrase"))
    card = unlock_identity(ctx.home, current).card  # a wrong one fails before asking for more
    new = get_new_passphrase(N_("New passphrase"), NEW_PASSPHRASE_ENV, [card.name])
    change_passphrase(ctx.home, current, new)
    click.echo(_("Passphrase changed. Use the new one from now on."), err=True)


@click.group(help=N_("People and nodes you work with, by their contact cards."))
def contact() -> None:
    pass


@contact.command(
    "add", help=N_("Add a contact from its CARD (compare the fingerprint with its owner first).")
)
@click.argument("card")
@click.option("--alias", required=True, help=N_("Short name to use in other commands."))
@click.pass_obj
def contact_add(ctx: Ctx, card: str, alias: str) -> None:
    parsed = parse_card(card)
    ctx.state.add_contact(alias, parsed, ctx.clock.now())
    click.echo(
        _("Added %(alias)s: %(name)s (%(role)s), fingerprint %(fingerprint)s")
        % {
            "alias": alias,
            "name": parsed.name,
            "role": role_word(parsed.role),
            "fingerprint": parsed.fingerprint,
        },
        err=True,
    )


def _row(alias: str, card: Card, added: int | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "alias": alias,
        "name": card.name,
        "role": card.role,
        "fingerprint": card.fingerprint,
        "url": card.url,
    }
    if added is not None:
        row["added"] = iso(added)
    return row


@contact.command("list", help=N_("List your contacts."))
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def contact_list(ctx: Ctx, as_json: bool) -> None:
    rows = [_row(a, c) for a, c in ctx.state.contacts()]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(
            _("No contacts yet. Add one with 'velador contact add CARD --alias NAME'."), err=True
        )
        return
    con = out_console()
    if con.width < NARROW:  # a table this narrow is unreadable: one block per contact
        for r in rows:
            _print_block(r)
        return
    t = table(_("alias"), _("name"), _("role"), _("fingerprint"), _("url"))
    t.columns[3].min_width = FINGERPRINT_WIDTH
    for r in rows:
        t.add_row(r["alias"], r["name"], role_word(r["role"]), r["fingerprint"], r["url"] or "")
    con.print(t)


def _print_block(row: dict[str, Any], added: int | None = None, more: Any = ()) -> None:
    """One contact as label/value lines; `added` in local time (the row keeps UTC for --json)."""
    click.echo(row["alias"])
    pairs = [
        ("name", row["name"]),
        ("role", role_word(row["role"])),
        ("fingerprint", row["fingerprint"]),
        ("url", row["url"]),
        ("added", local_time(added) if added else None),
        *more,
    ]
    print_fields([(k, str(value)) for k, value in pairs if value], indent="  ")


@contact.command(
    "show",
    help=N_("Show one contact: name, role, fingerprint (to compare aloud), address and card."),
)
@click.argument("alias")
@click.option("--json", "as_json", is_flag=True, help=N_("Machine-readable output."))
@click.pass_obj
def contact_show(ctx: Ctx, alias: str, as_json: bool) -> None:
    card = ctx.state.contact(alias)
    added = ctx.state.contact_added(alias)
    row = _row(alias, card, added)
    cases = [r.name for r in ctx.state.cases() if _names(r.policy, card)]
    if as_json:
        emit_json({**row, "card": card.text, "cases": cases})
        return
    _print_block(row, added, [("cases", ", ".join(cases)), ("card", card.text)])


def _names(policy: Any, card: Card) -> bool:
    """Whether a case policy names this card (as reporter, recipient, node or editor)."""
    cards = [policy.reporter, *policy.recipients, *policy.nodes]
    if policy.switch is not None:
        cards += list(policy.switch.editors)
    return any(c.fingerprint == card.fingerprint for c in cards)


@contact.command(
    "remove",
    help=N_(
        "Forget the contact ALIAS (cases that name it keep their own signed copy of its card)."
    ),
)
@click.argument("alias")
@click.pass_obj
def contact_remove(ctx: Ctx, alias: str) -> None:
    card = ctx.state.remove_contact(alias)
    click.echo(
        _("Removed %(alias)s: %(name)s (%(role)s), fingerprint %(fingerprint)s.")
        % {
            "alias": alias,
            "name": card.name,
            "role": role_word(card.role),
            "fingerprint": card.fingerprint,
        },
        err=True,
    )
    cases = [r.name for r in ctx.state.cases() if _names(r.policy, card)]
    if cases:
        click.echo(
            _(
                "Your cases %(cases)s still name this contact; they keep working, "
                "because each case keeps its own signed copy of the card."
            )
            % {"cases": ", ".join(cases)},
            err=True,
        )
