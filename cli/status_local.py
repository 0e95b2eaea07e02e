"""`velador status` without the passphrase: what the nodes last said, from this laptop alone.

Nodes answer status requests only when they are signed by someone the case policy names
(docs/protocol.md §4.4), so asking them needs the identity, and so the passphrase. Reading does
not: every check-in receipt and every status answer is remembered (LocalState.record_view), and
so is a release (vault/released.py). `status` therefore asks for the passphrase only to contact
the nodes; with `--offline`, with no terminal and no VELADOR_PASSPHRASE, or when the reporter
just presses Enter at the prompt, it shows this local view and says how old each answer is.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from vault.errors import N_
from vault.identity import Identity
from vault.released import known_release
from vault.state import CaseRecord
from vault.switch import arming_state

from .context import PASSPHRASE_ENV, Ctx, emit_json, out_console
from .i18n import _
from .release_view import print_release, release_json, state_word, switch_label
from .timefmt import when

PROMPT = N_("Passphrase (press Enter to see what the nodes last said, without asking them)")


def unlock_to_ask(ctx: Ctx, offline: bool) -> Identity | None:
    """The identity when the nodes are to be asked; None for the local view."""
    if offline:
        return None
    if os.environ.get(PASSPHRASE_ENV) is None:
        if not sys.stdin.isatty():
            return None
        text = click.prompt(_(PROMPT), hide_input=True, default="", show_default=False, err=True)
        if not text:
            return None
        from vault.identity import unlock_identity

        return unlock_identity(ctx.home, str(text))
    return ctx.unlock()


def local_rows(ctx: Ctx, rec: CaseRecord, now: int) -> Any:
    from .context import table as wrapping_table

    views = {v["node"]: v for v in ctx.state.node_views(rec.case_id)}
    label = switch_label(known_release(rec), arming_state(ctx.state, rec))
    table = wrapping_table(
        _("node"),
        _("state"),
        _("next deadline"),
        _("releases at"),
        _("answered"),
        title=_("%(case)s (%(case_id)s): %(label)s, as the nodes last said")
        % {"case": rec.name, "case_id": rec.case_id, "label": label},
        title_justify="left",
    )
    for card in rec.policy.nodes:
        v = views.get(card.fingerprint)
        if v is None:
            table.add_row(card.name, "-", "-", "-", _("never"))
            continue
        deadline = v["deadline"] or (v["paused_until"] if v["state"] == "PAUSED" else None)
        table.add_row(
            card.name,
            state_word(v["state"]),
            when(deadline, now),
            when(v["release_at"], now),
            when(v["time"], now),
        )
    return table


def show_local(ctx: Ctx, recs: list[CaseRecord], as_json: bool) -> None:
    """The local view of every case in `recs`; never contacts a node."""
    now = ctx.clock.now()
    if as_json:
        emit_json(
            {
                "time": now,
                "offline": True,
                "cases": [
                    {
                        "case": r.name,
                        "case_id": r.case_id,
                        "local": arming_state(ctx.state, r),
                        "release": release_json(known_release(r)),
                        "nodes": ctx.state.node_views(r.case_id),
                    }
                    for r in recs
                ],
            }
        )
        return
    con = out_console()
    for rec in recs:
        print_release(con, rec.name, known_release(rec), now)
        con.print(local_rows(ctx, rec, now))
    con.print(
        _(
            "These are the nodes' last answers kept on this laptop; the nodes were not asked "
            "now. To ask them, run 'velador status' again and type your passphrase."
        ),
        markup=False,
        highlight=False,
    )
