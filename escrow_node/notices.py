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
        "This node refused a release because its clock is ahead of most of the case's peers.",
        "Operator: check this node's clock and NTP; the release happens once the clock is right.",
    ),
}
OPERATOR_ONLY = {"clock_alarm"}
"""Events only the operator is told of (not part of the case's audiences)."""

EVENTS = tuple(e for e in _TEXT if e not in OPERATOR_ONLY)
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
) -> dict[str, Any]:
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
    }
    text, next_step = (t.format(**values) for t in _TEXT[event])
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
    return sign_document("notice", body, identity.sign_key)


def _enqueue(
    conn: sqlite3.Connection, notice: dict[str, Any], channel: str, target: str, now: int
) -> None:
    body = notice["body"]
    subject = f"[velador] case {body['case_id']}: {body['event']} ({body['node_name']})"
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
) -> int:
    """Store the notices of one event for one audience and queue their deliveries."""
    role = ROLE_OF_AUDIENCE[audience]
    n = 0
    for party in _parties(policy, audience):
        notice = make_notice(identity, config, policy, cs, rules, event, role, party, now)
        party_key = b64e(party.sign_pk)
        conn.execute(
            "INSERT INTO notices (case_id, audience, notice, created) VALUES (?,?,?,?)",
            (policy.case_id, party_key, json.dumps(notice), now),
        )
        targets = {
            (r["channel"], r["target"])
            for r in conn.execute(
                "SELECT channel, target FROM subscriptions WHERE case_id=? AND party=?",
                (policy.case_id, party_key),
            )
        }
        contact = config.contacts.get(party.fingerprint)
        if contact and contact.email:
            targets.add(("email", contact.email))
        if contact and contact.webhook:
            targets.add(("webhook", contact.webhook))
        for channel, target in sorted(targets):
            _enqueue(conn, notice, channel, target, now)
            n += 1
    if operator_copy and (config.operator_email or config.operator_webhook):
        notice = make_notice(identity, config, policy, cs, rules, event, "operator", None, now)
        if config.operator_email:
            _enqueue(conn, notice, "email", config.operator_email, now)
        if config.operator_webhook:
            _enqueue(conn, notice, "webhook", config.operator_webhook, now)
    return n


def emit_operator(
    conn: sqlite3.Connection,
    identity: Identity,
    config: NodeConfig,
    policy: Policy,
    cs: CaseState,
    rules: Rules,
    event: str,
    now: int,
) -> None:
    """Queue one notice of `event` to the operator's own [notify] addresses only."""
    if not (config.operator_email or config.operator_webhook):
        return
    notice = make_notice(identity, config, policy, cs, rules, event, "operator", None, now)
    if config.operator_email:
        _enqueue(conn, notice, "email", config.operator_email, now)
    if config.operator_webhook:
        _enqueue(conn, notice, "webhook", config.operator_webhook, now)
