"""Notices: what the node tells people, and where (docs/protocol.md §8).

A notice is a node-signed document of kind "notice". It carries no secret, only what the
receiver needs: case id, event, state, the node, times, and what to do next. Each notice is
stored for the party's inbox (GET /v1/inbox) and, in the same transaction, queued in the outbox
for every address that party registered (POST /v1/cases/{id}/subscribe) or that the operator
configured for its fingerprint ([contacts] in node.toml). The operator's own addresses get one
copy of each event.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable
from typing import Any

from vault.cards import Card
from vault.clock import iso
from vault.encoding import b64e
from vault.identity import Identity
from vault.policy import Policy
from vault.signing import sign_document

from .config import NodeConfig
from .engine import CaseState, Rules, release_time

ROLE_OF_AUDIENCE = {"reporter": "reporter", "editors": "editor", "recipients": "recipient"}

_TEXT = {
    "reminder": (
        "Check-in due by {deadline}.",
        "Check in with 'velador checkin {case}' before the deadline.",
    ),
    "overdue": (
        "The reporter missed the check-in deadline ({deadline}). The node releases at "
        "{release_at} unless the reporter checks in.",
        "Reporter: check in now. Editors: try to reach the reporter; if they are detained, "
        "request an editor release.",
    ),
    "checked_in": ("The reporter checked in again after missing a deadline.", "Nothing to do."),
    "pause_ended": ("The pause ended; the switch is armed again.", "Check in as usual."),
    "paused": ("The reporter paused the switch until {paused_until}.", "Nothing to do."),
    "resumed": ("The reporter resumed the switch.", "Nothing to do."),
    "editor_request": (
        "An editor asked for a release ({count} of {quorum} needed).",
        "Other editors: decide whether to ask too.",
    ),
    "editor_pending": (
        "Editors asked for a release. It happens at {pending_until} unless the reporter objects.",
        "Reporter: object with 'velador release object {case}' if you do not want the release.",
    ),
    "objection": (
        "The reporter objected to the editor release; it was cancelled.",
        "Nothing to do.",
    ),
    "duress": (
        "The reporter's last check-in carried the duress signal.",
        "Treat the reporter as being under coercion. Do not reply through their devices.",
    ),
    "destroy_pending": (
        "The reporter asked to destroy this node's envelopes; this happens at {destroy_at}.",
        "Editors: if the request may be coerced, request an editor release before then.",
    ),
    "destroyed": ("This node deleted its envelopes for the case.", "Nothing to do."),
    "released": (
        "The case was released ({reason}). This node serves its envelopes to the recipients.",
        "Recipients: recover with 'velador recover {case}'.",
    ),
    "clock_alarm": (
        "This node holds a release because its clock is ahead of most of the case's peers.",
        "Operator: check this node's clock and NTP. The release happens once the clock agrees "
        "with the peers, or at the latest one check-in interval plus grace from now.",
    ),
    "drill": (
        "SIMULACRO / DRILL. This is a drill of case {case}: nothing was released and nothing "
        "changes in the case. Esto es un simulacro del caso {case}: no se liberó nada y el caso "
        "sigue igual.",
        "Recipients and editors: answer with 'velador drill answer {case}' before {ends}. "
        "Outlets y editores: respondan con 'velador drill answer {case}' antes de {ends}.",
    ),
}
VARIANTS = {
    "clock_alarm:ahead": (
        "This node's clock is ahead of most of the case's peers, but the release was due by "
        "their time too (or was held as long as a wrong clock could need), so it went ahead.",
        "Operator: check this node's clock and NTP; times this node writes may be wrong.",
    ),
}
"""Other texts for an event (the event name stays): make_notice(..., variant=KEY)."""
OPERATOR_ONLY = {"clock_alarm"}
"""Events only the operator is told of (not part of the case's audiences)."""

EVENTS = tuple(e for e in _TEXT if e not in OPERATOR_ONLY)
DRILL_EVENTS = frozenset({"drill"})
"""Drill notices (escrow_node/drills.py): marked SIMULACRO / DRILL wherever they are shown."""
SILENT_EVENTS = frozenset({"duress"})
"""Silent alarms: nothing the reporter or a captor can see may move because of them, not even
the operator's metrics (metrics.py leaves their deliveries out; docs/protocol.md §8.6)."""


def _fmt(ts: int | None) -> str:
    return iso(ts) if ts else "-"


def _parties(policy: Policy, audience: str) -> tuple[Card, ...]:
    if audience == "reporter":
        return (policy.reporter,)
    if audience == "editors":
        return policy.switch.editors if policy.switch else ()
    if audience == "recipients":
        return policy.recipients
    raise ValueError(audience)


def make_notice(
    identity: Identity,
    config: NodeConfig,
    policy: Policy,
    cs: CaseState,
    rules: Rules,
    event: str,
    role: str,
    party: Card | None,
    now: int,
    extra: dict[str, Any] | None = None,
    variant: str | None = None,
) -> dict[str, Any]:
    """The node-signed notice of `event` (docs/protocol.md §3.6). `extra`: members added to
    the body (a drill's id and end, §11); `variant`: another text for the same event."""
    drill = (extra or {}).get("drill") or {}
    values = {
        "case": policy.case_id,
        "deadline": _fmt(cs.deadline),
        "release_at": _fmt(release_time(cs, rules)),
        "paused_until": _fmt(cs.paused_until),
        "pending_until": _fmt(cs.pending_until),
        "destroy_at": _fmt(cs.destroy_at),
        "count": len(cs.editors),
        "quorum": rules.editor_quorum,
        "reason": cs.release_reason or "-",
        "ends": _fmt(drill.get("ends")),
    }
    text, next_step = (t.format(**values) for t in VARIANTS.get(variant or "", _TEXT[event]))
    body = {
        "v": 1,
        "id": secrets.token_hex(16),
        "case_id": policy.case_id,
        "event": event,
        "to": role,
        "party": party.fingerprint if party else None,
        "state": cs.state,
        "node": identity.fingerprint,
        "node_name": config.name,
        "node_url": config.url,
        "time": now,
        "deadline": cs.deadline or None,
        "release_at": release_time(cs, rules),
        "text": text,
        "next": next_step,
        # What the reader's CLI needs to name the person and count the nodes (issue 12 §7)
        "reporter": policy.reporter.fingerprint,
        "nodes": len(policy.nodes),
        "release_reason": cs.release_reason,
        "paused_until": cs.paused_until,
        "destroy_at": cs.destroy_at,
    }
    body.update(extra or {})
    return sign_document("notice", body, identity.sign_key)


def _enqueue(
    conn: sqlite3.Connection, notice: dict[str, Any], channel: str, target: str, now: int
) -> None:
    body = notice["body"]
    subject = f"[velador] case {body['case_id']}: {body['event']} ({body['node_name']})"
    if body["event"] in DRILL_EVENTS:
        subject = "[velador] SIMULACRO / DRILL" + subject.removeprefix("[velador]")
    payload = {"subject": subject, "notice": notice}
    conn.execute(
        "INSERT OR IGNORE INTO outbox"
        " (key, case_id, channel, target, payload, created, next_attempt)"
        " VALUES (?,?,?,?,?,?,0)",
        (
            f"{body['id']}:{channel}:{target}",
            body["case_id"],
            channel,
            target,
            json.dumps(payload),
            now,
        ),
    )


def emit(
    conn: sqlite3.Connection,
    identity: Identity,
    config: NodeConfig,
    policy: Policy,
    cs: CaseState,
    rules: Rules,
    event: str,
    audience: str,
    now: int,
    operator_copy: bool,
    extra: Callable[[Card], dict[str, Any]] | None = None,
    ids: dict[str, str] | None = None,
) -> int:
    """Store the notices of one event for one audience and queue their deliveries.

    `extra(party)`: members added to that party's notice; `ids`, when given, receives each
    party's notice id by fingerprint (a drill reports per notice, drills.py)."""
    role = ROLE_OF_AUDIENCE[audience]
    n = 0
    for party in _parties(policy, audience):
        more = extra(party) if extra else None
        notice = make_notice(identity, config, policy, cs, rules, event, role, party, now, more)
        if ids is not None:
            ids[party.fingerprint] = notice["body"]["id"]
        party_key = b64e(party.sign_pk)
        conn.execute(
            "INSERT INTO notices (case_id, audience, notice, created) VALUES (?,?,?,?)",
            (policy.case_id, party_key, json.dumps(notice), now),
        )
        for channel, target in party_targets(conn, config, policy.case_id, party):
            _enqueue(conn, notice, channel, target, now)
            n += 1
    if operator_copy:
        emit_operator(conn, identity, config, policy, cs, rules, event, now)
    return n


def party_targets(
    conn: sqlite3.Connection, config: NodeConfig, case_id: str, party: Card
) -> list[tuple[str, str]]:
    """Every (channel, target) a party's notices go to: its own addresses and the operator's
    [contacts] entry for its fingerprint (docs/protocol.md §8)."""
    targets = {
        (r["channel"], r["target"])
        for r in conn.execute(
            "SELECT channel, target FROM subscriptions WHERE case_id=? AND party=?",
            (case_id, b64e(party.sign_pk)),
        )
    }
    contact = config.contacts.get(party.fingerprint)
    if contact and contact.email:
        targets.add(("email", contact.email))
    if contact and contact.webhook:
        targets.add(("webhook", contact.webhook))
    return sorted(targets)


def emit_operator(
    conn: sqlite3.Connection,
    identity: Identity,
    config: NodeConfig,
    policy: Policy,
    cs: CaseState,
    rules: Rules,
    event: str,
    now: int,
    variant: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Queue one notice of `event` to the operator's own [notify] addresses only: the one path
    for every operator copy (emit's included)."""
    if not (config.operator_email or config.operator_webhook):
        return
    notice = make_notice(
        identity, config, policy, cs, rules, event, "operator", None, now, extra, variant
    )
    if config.operator_email:
        _enqueue(conn, notice, "email", config.operator_email, now)
    if config.operator_webhook:
        _enqueue(conn, notice, "webhook", config.operator_webhook, now)
