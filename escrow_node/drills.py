"""Drills: a rehearsal of the whole release path, except the secret (docs/protocol.md §11).

A drill is its own state machine, apart from the deadline engine: it lives in the tables
`drills` and `drill_parties` (db.py schema 5), and nothing here reads or writes `cases`,
`envelopes` or the engine's state, nor calls engine.py. So no drill message, valid, forged,
replayed or out of order, can move a deadline, count toward an editor quorum or release a
share (tests/node/test_drill_model.py checks this against a node that never saw a drill).
The one exception is the reporter's own duress marker on a drill start: it raises the silent
alarm exactly as on any other reporter request (§3.2), because the reporter asked for that.

A drill, at this node:
    OPEN     from `started` to `ends` (started + DRILL_WINDOW): notices sent, answers taken
    CLOSED   after `ends`: answers refused, the report stays readable

At the start the node makes, for every recipient, editor and the reporter, a fresh 32-byte
challenge: sealed (X25519 sealed box) to a recipient's box key, the key its envelopes are
sealed to; plain for an editor, who proves it can sign a drill-only request; none is asked of
the reporter, who started the drill. It keeps only a digest of each challenge. It then sends a
`drill` notice, marked SIMULACRO / DRILL, to each of them through every channel a real release
uses (inbox, their addresses, the operator's [contacts]) plus the operator's own addresses.
Each answer is checked and its four proofs are recorded, signed by the party, in
`drill_parties` and the audit chain (`drill_answer`).
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
from typing import Any

from nacl.public import PublicKey, SealedBox

from vault.cards import Card
from vault.encoding import b64d, b64e, doc_hash
from vault.errors import VeladorError
from vault.nodeproto.messages import (
    DRILL_CHALLENGE_BYTES,
    check_drill_answer,
    check_drill_id,
    drill_digest,
    formats_current,
)
from vault.policy import Policy
from vault.signing import verify_document

from . import audit, engine, notices
from .auth import SignedRequest
from .errors import BadRequest, Conflict
from .hbcheck import parse_body
from .outbox import redact_target
from .service import NodeService, state_of

DRILL_WINDOW = 7 * 86400
"""How long a drill takes answers (seconds)."""
PARTIES = {"reporter", "editor", "recipient"}
_AUDIENCE = {"recipient": "recipients", "editor": "editors", "reporter": "reporter"}


def needed_nodes(policy: Policy) -> int:
    """K: how many nodes a recipient must reach to collect enough shares, at least (the
    smallest `group_threshold` group thresholds, capped by the number of nodes)."""
    need = sum(sorted(k for k, _ in policy.spec.groups)[: policy.spec.group_threshold])
    return max(1, min(need, len(policy.nodes)))


def _open_drill(conn: sqlite3.Connection, case_id: str, now: int) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM drills WHERE case_id = ? AND ends > ? ORDER BY started DESC LIMIT 1",
        (case_id, now),
    ).fetchone()


# --- starting a drill ----------------------------------------------------------------------------


def start(svc: NodeService, req: SignedRequest, case_id: str, body: bytes) -> dict[str, Any]:
    """POST /v1/cases/{id}/drill (reporter): start drill `drill` at this node (§11.1)."""
    from .operations import marker_of

    payload = parse_body(body, "drill request")
    if not isinstance(payload, dict) or set(payload) - {"drill", "marker"}:
        raise BadRequest("a drill request is {drill, marker}")
    try:
        drill_id = check_drill_id(payload.get("drill"))
    except VeladorError as exc:
        raise BadRequest(exc.message) from exc
    duress = marker_of(svc, payload) is True
    effects: list[engine.Effect] = []
    refusal: list[VeladorError] = []

    def run(conn, row, policy, roles, now):
        nonlocal effects
        rules = svc.rules_of(policy)
        shown = state_of(row)
        if duress and shown.state not in engine.TERMINAL:
            # The reporter's silent alarm, as on every other reporter request (§3.2). It is
            # committed whatever happens to the drill, and the answer shows the state from
            # before it, so a captor sees an ordinary drill (or an ordinary refusal).
            real, effects = engine.duress_signal(shown, rules, now)
            svc.apply(conn, row, policy, shown, real, effects, now, "drill", {"duress": True})
            row = svc.load(conn, case_id)
            try:
                if row["state"] not in engine.TERMINAL:
                    begin(svc, conn, row, policy, drill_id, "reporter", now)
            except VeladorError as exc:
                refusal.append(exc)
        else:
            begin(svc, conn, row, policy, drill_id, "reporter", now)
        return svc.receipt(policy, shown, rules, "drill", drill_id, now)

    receipt = svc.read(req, case_id, {"reporter"}, "start a drill", run)
    svc.after_commit(effects, queued=True)
    if refusal:
        raise refusal[0]
    return receipt


def begin(
    svc: NodeService,
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    policy: Policy,
    drill_id: str,
    by: str,
    now: int,
) -> bool:
    """Open drill `drill_id` inside the caller's transaction; False if it exists already (a
    retried start is answered again without sending anything twice)."""
    case_id = policy.case_id
    if row["state"] in engine.TERMINAL:
        raise Conflict(f"cannot start a drill: the case is {row['state']}")
    if conn.execute(
        "SELECT 1 FROM drills WHERE case_id = ? AND drill_id = ?", (case_id, drill_id)
    ).fetchone():
        return False
    running = _open_drill(conn, case_id, now)
    if running is not None:
        raise Conflict(
            f"drill {running['drill_id']} of this case is still open; wait until it ends",
            hint="see 'velador drill report CASE'",
        )
    ends = now + DRILL_WINDOW
    conn.execute(
        "INSERT INTO drills (case_id, drill_id, started, ends, by) VALUES (?,?,?,?,?)",
        (case_id, drill_id, now, ends, by),
    )
    challenges: dict[tuple[str, str], str] = {}
    for role, parties in _parties(policy):
        for card in parties:
            challenges[(role, card.fingerprint)] = _new_challenge(
                conn, case_id, drill_id, role, card
            )
    cs = state_of(row)
    rules = svc.rules_of(policy)
    drill = {"id": drill_id, "started": now, "ends": ends}
    for role, _ in _parties(policy):
        ids: dict[str, str] = {}
        notices.emit(
            conn,
            svc.identity,
            svc.config,
            policy,
            cs,
            rules,
            "drill",
            _AUDIENCE[role],
            now,
            operator_copy=False,
            extra=lambda _card: {"drill": drill},
            ids=ids,
        )
        for fp, notice_id in ids.items():
            conn.execute(
                "UPDATE drill_parties SET notice = ? WHERE case_id = ? AND drill_id = ?"
                " AND party = ? AND role = ?",
                (notice_id, case_id, drill_id, fp, role),
            )
    notices.emit_operator(
        conn, svc.identity, svc.config, policy, cs, rules, "drill", now, extra={"drill": drill}
    )
    audit.append(
        conn,
        now,
        case_id,
        "drill",
        {
            "drill": drill_id,
            "by": by,
            "ends": ends,
            "parties": len(challenges),
            "state": row["state"],  # the real state, unchanged by the drill
        },
    )
    return True


def _parties(policy: Policy) -> list[tuple[str, tuple[Card, ...]]]:
    editors = policy.switch.editors if policy.switch else ()
    return [("recipient", policy.recipients), ("editor", editors), ("reporter", (policy.reporter,))]


def _new_challenge(
    conn: sqlite3.Connection, case_id: str, drill_id: str, role: str, card: Card
) -> str:
    """A fresh challenge: sealed to a recipient's box key (the key its envelopes are sealed
    to), plain for an editor (it proves it can sign), none for the reporter."""
    raw = secrets.token_bytes(DRILL_CHALLENGE_BYTES)
    if role == "recipient":
        shown = b64e(bytes(SealedBox(PublicKey(card.box_pk)).encrypt(raw)))
    elif role == "editor":
        shown = b64e(raw)
    else:
        shown, raw = "", b""
    conn.execute(
        "INSERT INTO drill_parties (case_id, drill_id, party, role, challenge, digest)"
        " VALUES (?,?,?,?,?,?)",
        (case_id, drill_id, card.fingerprint, role, shown, drill_digest(raw) if raw else ""),
    )
    return shown


def start_scheduled(svc: NodeService, now: int | None = None) -> int:
    """Start the drills the policies schedule (`switch.drill_every`, format.md §4): drill
    `s{n}` once `created + n * drill_every` has passed. Every node of a case computes the same
    id from the signed policy, so their reports line up. Returns how many were started."""
    now = svc.clock.now() if now is None else now
    started = 0
    with svc.store.read() as conn:
        rows = conn.execute(
            "SELECT case_id FROM cases WHERE state NOT IN ('RELEASED', 'DESTROYED')"
            " AND json_extract(policy, '$.body.switch.drill_every') > 0"
        ).fetchall()
    for (case_id,) in rows:
        try:
            # Read first: a write transaction only for a case whose drill is due and not begun.
            with svc.store.read() as conn:
                if not _due(svc, conn, case_id, now):
                    continue
            with svc.store.tx() as conn:
                drill_id = _due(svc, conn, case_id, now)
                if drill_id:
                    row = svc.load(conn, case_id)
                    policy = svc.policy_of(row)
                    started += begin(svc, conn, row, policy, drill_id, "schedule", now)
        except VeladorError:
            continue
    if started:
        svc.after_commit([], queued=True)
    return started


def _due(svc: NodeService, conn: sqlite3.Connection, case_id: str, now: int) -> str | None:
    """The id of the scheduled drill due now and not yet begun (None: nothing to do)."""
    policy = svc.policy_of(svc.load(conn, case_id))
    every = policy.switch.drill_every if policy.switch else 0
    n = (now - policy.created) // every if every else 0
    if n < 1 or _open_drill(conn, case_id, now) is not None:
        return None
    drill_id = f"s{n}"
    done = conn.execute(
        "SELECT 1 FROM drills WHERE case_id = ? AND drill_id = ?", (case_id, drill_id)
    ).fetchone()
    return None if done else drill_id


# --- a party fetches its challenges ------------------------------------------------------------


def challenge(svc: NodeService, req: SignedRequest, case_id: str) -> dict[str, Any]:
    """GET /v1/cases/{id}/drill: the open drill and the signer's challenges, node-signed."""

    def run(conn, row, policy, roles, now):
        drill = _open_drill(conn, case_id, now)
        if drill is None:
            raise Conflict(f"no drill of case {case_id} is open at this node")
        mine = [
            {"role": r["role"], "challenge": r["challenge"], "answered": r["answered"]}
            for r in conn.execute(
                "SELECT role, challenge, answered FROM drill_parties WHERE case_id = ?"
                " AND drill_id = ? AND party = ? ORDER BY role",
                (case_id, drill["drill_id"], roles[next(iter(roles))]),
            )
            if r["role"] in roles
        ]
        return svc._sign(
            "drill",
            {
                "v": 1,
                "case_id": case_id,
                "node": svc.fingerprint,
                "drill": drill["drill_id"],
                "started": drill["started"],
                "ends": drill["ends"],
                "needed": needed_nodes(policy),
                "time": now,
                "challenges": mine,
                # A recipient proves it can read the stores (§11.3) even when it answers with
                # the bare case id its inbox names: the policy's stores, which its case card
                # holds anyway. Only to recipients; the answerer trusts a list K nodes agree on.
                "stores": list(policy.stores) if "recipient" in roles else [],
            },
        )

    return svc.read(req, case_id, PARTIES, "take part in a drill", run)


# --- answers ------------------------------------------------------------------------------------


def answer(svc: NodeService, req: SignedRequest, case_id: str, body: bytes) -> dict[str, Any]:
    """POST /v1/cases/{id}/drill/answer: check one party's answer and record its proofs."""
    payload = parse_body(body, "drill answer")

    def run(conn, row, policy, roles, now):
        try:
            ans = check_drill_answer(payload, req.signer)
        except VeladorError as exc:
            raise BadRequest(exc.message) from exc
        role = ans["role"]
        if role not in roles:
            raise BadRequest(f"you are not a {role} of this case")
        if ans["case_id"] != case_id or ans["node"] != svc.fingerprint:
            raise BadRequest("this drill answer is for another case or node")
        party = roles[role]
        drill = conn.execute(
            "SELECT * FROM drills WHERE case_id = ? AND drill_id = ?", (case_id, ans["drill"])
        ).fetchone()
        if drill is None:
            raise Conflict(f"no drill {ans['drill']} of case {case_id} at this node")
        if now >= drill["ends"]:
            raise Conflict(f"drill {ans['drill']} ended; answers are closed")
        mine = conn.execute(
            "SELECT * FROM drill_parties WHERE case_id = ? AND drill_id = ? AND party = ?"
            " AND role = ?",
            (case_id, ans["drill"], party, role),
        ).fetchone()
        if mine is None:
            raise Conflict("this drill has no challenge for you")
        if mine["answered"] is not None:
            raise Conflict("you answered this drill at this node already")
        proofs = judge(policy, mine, ans, req.signer)
        conn.execute(
            "UPDATE drill_parties SET answered = ?, answer = ?, proofs = ? WHERE case_id = ?"
            " AND drill_id = ? AND party = ? AND role = ?",
            (now, json.dumps(payload), json.dumps(proofs), case_id, ans["drill"], party, role),
        )
        audit.append(
            conn,
            now,
            case_id,
            "drill_answer",
            {
                "drill": ans["drill"],
                "party": party,
                "role": role,
                "answer": doc_hash(payload),  # the party-signed answer, kept in drill_parties
                **proofs,
            },
        )
        cs = state_of(row)
        receipt = svc.receipt_body(policy, cs, svc.rules_of(policy), "drill_answer", "", now)
        receipt["ref"] = doc_hash(payload)
        receipt["proofs"] = proofs
        return svc._sign("receipt", receipt)

    return svc.read(req, case_id, {"editor", "recipient"}, "answer a drill", run)


def judge(policy: Policy, mine: sqlite3.Row, ans: dict[str, Any], signer: bytes) -> dict[str, Any]:
    """The four proofs of §11.3, as recorded: key, reach, stores, software."""
    key = False
    proof = ans["proof"]
    if mine["role"] == "recipient" and isinstance(proof, str) and len(proof) < 100:
        try:
            opened = b64d(proof, "drill proof")
        except VeladorError:
            opened = b""
        key = bool(opened) and hmac.compare_digest(drill_digest(opened), mine["digest"])
    elif mine["role"] == "editor" and isinstance(proof, dict):
        try:
            req = verify_document(proof, "drill-request", signer, what="drill request")
            key = (
                isinstance(req, dict)
                and req.get("case_id") == policy.case_id
                and req.get("drill") == ans["drill"]
                and req.get("node") == ans["node"]
                and isinstance(req.get("challenge"), str)
                and hmac.compare_digest(req["challenge"].encode(), mine["challenge"].encode())
            )
        except VeladorError:
            key = False
    nodes = {c.fingerprint for c in policy.nodes}
    reached = len(nodes & set(ans["reached"]))
    stores = ans["stores"]
    return {
        "key": key,
        "reached": reached,
        "needed": needed_nodes(policy),
        "reach": reached >= needed_nodes(policy),
        "stores": bool(stores and stores["checked"] > 0 and stores["ok"] == stores["checked"]),
        "software": formats_current(ans["software"]["formats"]),
    }


# --- the report ---------------------------------------------------------------------------------


def report(
    svc: NodeService, req: SignedRequest, case_id: str, drill_id: str | None
) -> dict[str, Any]:
    """GET /v1/cases/{id}/drill/report[?drill=ID] (reporter): per party, which notices went
    out on which channel and which failed, and its answer's proofs; node-signed."""

    def run(conn, row, policy, roles, now):
        if drill_id:
            drill = conn.execute(
                "SELECT * FROM drills WHERE case_id = ? AND drill_id = ?", (case_id, drill_id)
            ).fetchone()
        else:
            drill = conn.execute(
                "SELECT * FROM drills WHERE case_id = ? ORDER BY started DESC LIMIT 1",
                (case_id,),
            ).fetchone()
        if drill is None:
            raise Conflict(f"no drill of case {case_id} at this node")
        parties = []
        for r in conn.execute(
            "SELECT party, role, notice, answered, proofs FROM drill_parties"
            " WHERE case_id = ? AND drill_id = ? ORDER BY role, party",
            (case_id, drill["drill_id"]),
        ):
            parties.append(
                {
                    "party": r["party"],
                    "role": r["role"],
                    "channels": _channels(conn, r["notice"]),
                    "answered": r["answered"],
                    "proofs": json.loads(r["proofs"]) if r["proofs"] else None,
                }
            )
        return svc._sign(
            "drill-report",
            {
                "v": 1,
                "case_id": case_id,
                "node": svc.fingerprint,
                "node_name": svc.config.name,
                "drill": drill["drill_id"],
                "by": drill["by"],
                "started": drill["started"],
                "ends": drill["ends"],
                "needed": needed_nodes(policy),
                "time": now,
                "parties": parties,
            },
        )

    return svc.read(req, case_id, {"reporter"}, "read the drill report", run)


def _channels(conn: sqlite3.Connection, notice_id: str | None) -> list[dict[str, Any]]:
    """Each delivery of a party's drill notice: the inbox (stored with the notice) and every
    outbox row, its target redacted (one party's address is never shown to another, §8.5)."""
    if not notice_id:
        return []
    out: list[dict[str, Any]] = [{"channel": "inbox", "target": "", "result": "delivered"}]
    for r in conn.execute(
        "SELECT channel, target, attempts, delivered, failed, last_error FROM outbox"
        " WHERE key >= ? AND key < ? ORDER BY key",
        (notice_id + ":", notice_id + ";"),
    ):
        if r["delivered"] is not None:
            result = "delivered"
        elif r["failed"] is not None:
            result = "failed"
        elif r["attempts"]:
            result = "failing"
        else:
            result = "pending"
        out.append(
            {
                "channel": r["channel"],
                "target": redact_target(r["channel"], r["target"]),
                "result": result,
                "attempts": r["attempts"],
                "error": (r["last_error"] or "")[:200],
            }
        )
    return out
