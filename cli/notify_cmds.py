"""`velador notify`: where the escrow nodes send this person's notices for a case.

Nodes e-mail or call a webhook for every notice addressed to a party (docs/protocol.md: the
subscribe endpoints and the outbox). The address is registered by the party itself, signed, at
every node of the case, so an operator never has to type a reporter's e-mail into a config file
and a party can change it without asking anyone. Reporters name their own case; editors and
recipient outlets give the case card or the case id.
"""

from __future__ import annotations

from typing import Any

import click

from vault.cards import Card
from vault.errors import N_, NodeError, PolicyError

from .context import Ctx, emit_json
from .i18n import _, error_text
from .switch_cmds import json_option, timeout_option


def _case_nodes(ctx: Ctx, text: str) -> tuple[str, tuple[Card, ...]]:
    if ctx.state.has_case(text):
        policy = ctx.state.case(text).policy
        return policy.case_id, tuple(policy.nodes)
    from vault.netrecover import case_ref

    contacts = [card for _, card in ctx.state.contacts()]
    ref = case_ref(
        text,
        [c for c in contacts if c.role == "node"],
        [c for c in contacts if c.role == "reporter"],
    )
    return ref.case_id, ref.nodes


@click.command(
    "notify",
    help=N_(
        "Tell every node of CASE where to send your notices (reminders, alerts, releases).\n\n"
        "CASE is your case name, or for editors and outlets the case card or id. Notices carry "
        "no secret: the case id, what happened, and what to do next."
    ),
)
@click.argument("case")
@click.option(
    "--email", "emails", multiple=True, help=N_("E-mail address for notices; repeatable.")
)
@click.option(
    "--webhook",
    "hooks",
    multiple=True,
    help=N_("http(s) URL for signed JSON notices; repeatable."),
)
@click.option("--remove", is_flag=True, help=N_("Stop sending to these addresses instead."))
@timeout_option
@json_option
@click.pass_obj
def notify_cmd(
    ctx: Ctx,
    case: str,
    emails: tuple[str, ...],
    hooks: tuple[str, ...],
    remove: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """`velador notify` (help text above)."""
    from vault.switch import fan_out

    targets = [("email", e) for e in emails] + [("webhook", h) for h in hooks]
    if not targets:
        raise PolicyError(
            N_("give at least one --email or --webhook"), hint=N_("see 'velador notify -h'")
        )
    case_id, nodes = _case_nodes(ctx, case)
    if not nodes:
        raise PolicyError(N_("case %(case)s has no escrow nodes to send notices"), case=case)
    ident = ctx.unlock()

    def register(client: Any) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        for channel, target in targets:
            if remove:
                answer = client.unsubscribe(case_id, channel, target)
            else:
                answer = client.subscribe(case_id, channel, target)
        return answer

    results = fan_out(nodes, ident, ctx.clock, register, timeout)
    if as_json:
        emit_json({"case_id": case_id, "nodes": [r.to_json() for r in results]})
    else:
        for r in results:
            if r.ok and r.body is not None:
                now = ", ".join(f"{s['channel']} {s['target']}" for s in r.body["subscriptions"])
                if now:
                    click.echo(f"{r.node}: {now}", err=True)
                else:
                    click.echo(_("%(node)s: no addresses") % {"node": r.node}, err=True)
            else:
                assert r.error is not None
                click.echo(
                    _("%(node)s: not changed (%(error)s)")
                    % {"node": r.node, "error": error_text(r.error)[0]},
                    err=True,
                )
    failed = [r for r in results if not r.ok]
    if failed and len(failed) == len(results) and not any(r.unreachable for r in failed):
        reason = error_text(failed[0].error)[0] if failed[0].error else _("refused")
        raise PolicyError(
            N_("every node of case %(case_id)s refused: %(reason)s"),
            hint=N_("only the reporter, the editors and the recipients of a case can register"),
            case_id=case_id,
            reason=reason,
        )
    if failed:
        raise NodeError(
            N_("%(done)d of %(total)d nodes updated; not changed at %(names)s"),
            hint=N_("run the same command again later; nodes already done are not changed twice"),
            done=len(results) - len(failed),
            total=len(results),
            names=", ".join(r.node for r in failed),
        )
