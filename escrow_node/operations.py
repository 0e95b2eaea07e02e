"""One function per API operation (docs/protocol.md §4); the routers in api/ only adapt HTTP."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from vault.encoding import b64d, b64e, canonical_json, require
from vault.envelope import check_envelope
from vault.errors import FormatError, VeladorError
from vault.nodeproto.messages import Heartbeat, custody_digest, open_marker
from vault.policy import MAX_CHAIN, Policy, parse_policy, replacement_path

from . import admission, audit, cover, engine, targets
from .auth import SignedRequest, consume_nonce
from .engine import CaseState, Rules
from .errors import BadRequest, Conflict, Forbidden, RegistrationClosed, Replay
from .hbcheck import CheckedHeartbeat, Outcome, parse_body
from .service import NodeService, as_bad_request, state_of

PARTIES = {"reporter", "editor", "recipient"}
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,63}$")
MAX_SUBSCRIPTIONS = 5


# --- registration -------------------------------------------------------------------------


def _check_registration(svc: NodeService, req: SignedRequest, payload: Any) -> tuple[Policy, list]:
    try:
        policy = parse_policy(require(payload, "policy", dict, "registration"))
    except VeladorError as exc:
        raise as_bad_request(exc) from exc
    if req.signer != policy.reporter.sign_pk:
        raise Forbidden("a case must be registered by the reporter who signed its policy")
    if policy.switch is None:
        raise BadRequest("the case policy has no switch rules; an escrow node has nothing to do")
    mine = policy.holders_of(svc.identity.card.sign_pk)
    if not mine:
        raise Forbidden("the case policy does not name this node as a share holder")
    envs = require(payload, "envelopes", list, "registration")
    got: dict[tuple[str, str], dict[str, Any]] = {}
    for env in envs:
        try:
            body = check_envelope(env, policy)
        except VeladorError as exc:
            raise as_bad_request(exc) from exc
        key = (body["holder"], body["recipient"])
        if body["holder"] not in {h.id for h in mine}:
            raise BadRequest(f"envelope for holder {body['holder']} is not this node's")
        if key in got:
            raise BadRequest("two envelopes for the same holder and recipient")
        got[key] = env
    want = {(h.id, r.fingerprint) for h in mine for r in policy.recipients}
    if set(got) != want:
        raise BadRequest(
            f"expected {len(want)} envelopes (each of this node's shares for each recipient), "
            f"got {len(got)} matching ones"
        )
    return policy, [got[k] for k in sorted(got)]


def _invitation(payload: Any) -> str | None:
    """The optional invitation code of a registration (never logged, never echoed)."""
    code = payload.get("invitation") if isinstance(payload, dict) else None
    if code is not None and (not isinstance(code, str) or len(code) > admission.MAX_CODE):
        raise BadRequest("registration: invitation must be a string of at most 128 characters")
    return code


def _is_new_to(svc: NodeService, case_id: str, signer: bytes) -> bool:
    """Whether this registration is gated (§4.1.1): a case id the node does not hold, or one
    another reporter key registered. Rotations of a registered case are never refused for
    their peers' URLs (a half-done rotation is worse than the risk)."""
    with svc.store.snapshot() as conn:
        row = conn.execute("SELECT reporter FROM cases WHERE case_id = ?", (case_id,)).fetchone()
    return row is None or row[0] != b64e(signer)


def register(svc: NodeService, req: SignedRequest, body: bytes) -> dict[str, Any]:
    try:
        payload = parse_body(body, "registration")
        invitation = _invitation(payload)
        policy, envs = _check_registration(svc, req, payload)
        if req.case_id not in (None, policy.case_id):
            raise BadRequest("the request signature names another case")
        if _is_new_to(svc, policy.case_id, req.signer):
            # Outside the transaction: resolving names may take seconds (protocol §4.1.1).
            targets.check_peers(svc.config, svc.identity.card.sign_pk, policy.nodes)
        rules = Rules.from_switch(policy.switch)  # type: ignore[arg-type]
        policy_json = json.dumps(policy.doc)
        chain = _chain_of(payload, policy)  # verified outside the write lock
        with svc.store.tx() as conn:
            now = svc.clock.now()
            consume_nonce(conn, req, svc.config.timestamp_tolerance)
            row = conn.execute(
                "SELECT * FROM cases WHERE case_id = ?", (policy.case_id,)
            ).fetchone()
            admitted = None
            if row is None or row["reporter"] != b64e(req.signer):
                # A new case (or someone else's case id: answered as for a new one, so a
                # stranger cannot learn that it exists). The case's own reporter is never
                # gated again: rotations and re-registrations of her case always go through.
                try:
                    admitted = admission.gate(
                        conn, svc.config.registration, policy.reporter.fingerprint, invitation, now
                    )
                except RegistrationClosed:
                    svc.registration_requests.record(policy.reporter.fingerprint, now)
                    raise
            duress = marker_of(svc, payload) is True
            if row is not None and duress and row["policy_hash"] != policy.hash:
                receipt = _rotate_under_duress(svc, conn, row, policy, rules, now, chain)
                wake = svc.load(conn, policy.case_id)["next_wake"]
            elif row is not None:
                receipt = _reregister(svc, conn, row, policy, envs, rules, now, chain)
                wake = svc.load(conn, policy.case_id)["next_wake"]
            else:
                cs, _ = engine.register(rules, now)
                conn.execute(
                    "INSERT INTO cases (case_id, policy_hash, policy, reporter, state, seq,"
                    " last_beat,"
                    " deadline, reminded, warned, editors, next_wake, registered, updated, version)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,1)",
                    (
                        policy.case_id,
                        policy.hash,
                        policy_json,
                        b64e(policy.reporter.sign_pk),
                        cs.state,
                        cs.seq,
                        cs.last_beat,
                        cs.deadline,
                        cs.reminded,
                        int(cs.warned),
                        "[]",
                        engine.next_wake(cs, rules),
                        now,
                        now,
                    ),
                )
                _store_envelopes(conn, policy.case_id, envs)
                audit.append(
                    conn,
                    now,
                    policy.case_id,
                    "register",
                    {
                        "policy_hash": policy.hash,
                        "envelopes": len(envs),
                        "to": cs.state,
                        "admission": admitted,
                    },
                )
                receipt = svc.receipt(policy, cs, rules, "register", policy.hash, now)
                wake = engine.next_wake(cs, rules)
    except Replay:
        raise
    except VeladorError:
        svc.burn_nonce(req)
        raise
    svc.on_change(wake, True)
    return receipt


def _rotate_under_duress(svc, conn, row, policy, rules, now, chain=()) -> dict[str, Any]:
    """A rotation sent with the duress marker (docs/protocol.md §4.4): the policy is NOT
    replaced; the real case gets the silent alarm (engine.duress_signal), and the captor is
    answered, now and in later duress-marked requests, as if it had been (cover.py)."""
    real = state_of(row)
    basis, shown_hash = cover.basis(conn, real, row["policy_hash"], policy.case_id)
    if policy.hash != shown_hash:
        # The checks a normal rotation makes (_reregister), against what the captor was shown:
        # the same `chain` of intermediate versions is accepted, or a node that missed a
        # rotation would refuse under duress what it accepts normally (a tell).
        follows = policy.replaces == shown_hash or (
            replacement_path(policy, shown_hash, [*chain, svc.policy_of(row)], MAX_CHAIN + 1)
            is not None
        )
        if not follows or b64e(policy.reporter.sign_pk) != row["reporter"]:
            raise Conflict(
                "this case is already registered with a different policy",
                hint="a new policy must name the current one in 'replaces'",
            )
        if basis.state in engine.TERMINAL:
            raise Conflict(f"cannot replace the policy: the case is {basis.state}")
        if basis.state in engine.WATCHING:
            basis = engine.replace(basis, deadline=basis.last_beat + rules.every, reminded=0)
    shown, _ = engine.advance(basis, rules, now, synced=True)
    current = svc.policy_of(row)
    new, effects = engine.duress_signal(real, svc.rules_of(current), now)
    detail = {"by": {"reporter": policy.reporter.fingerprint}, "duress": True}
    cover.save(conn, policy.case_id, shown, policy.hash, now)  # first: no reporter notice
    if real.state in engine.TERMINAL:
        audit.append(conn, now, policy.case_id, "rotate", {**detail, "to": real.state})
    else:
        svc.apply(
            conn, svc.load(conn, policy.case_id), current, real, new, effects, now, "rotate", detail
        )
    return svc.receipt(policy, shown, rules, "register", policy.hash, now)


def _store_envelopes(conn: sqlite3.Connection, case_id: str, envs: list[dict[str, Any]]) -> None:
    conn.executemany(
        "INSERT INTO envelopes (case_id, holder, recipient, envelope) VALUES (?,?,?,?)",
        [(case_id, e["body"]["holder"], e["body"]["recipient"], json.dumps(e)) for e in envs],
    )


def _stored_envelopes(conn: sqlite3.Connection, case_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT envelope FROM envelopes WHERE case_id = ? ORDER BY holder, recipient", (case_id,)
    )
    return [json.loads(r[0]) for r in rows]


def _chain_of(payload: Any, policy: Policy) -> list[Policy]:
    """The optional "chain": the policies between the one this node holds and `policy`, newest
    first. Each MUST be signed by the same reporter and be of the same case; the links
    themselves are checked against the stored policy in `_reregister`."""
    raw = payload.get("chain", []) if isinstance(payload, dict) else []
    if not isinstance(raw, list) or len(raw) > MAX_CHAIN:
        raise BadRequest(f"registration: chain must be a list of at most {MAX_CHAIN} policies")
    out = []
    for doc in raw:
        try:
            p = parse_policy(doc, policy.reporter.sign_pk)
        except VeladorError as exc:
            raise as_bad_request(exc) from exc
        if p.case_id != policy.case_id:
            raise BadRequest("registration: a chain policy belongs to another case")
        out.append(p)
    return out


def _remember_policy(conn: sqlite3.Connection, p: Policy, now: int) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO policy_history (case_id, policy_hash, policy, replaced)"
        " VALUES (?,?,?,?)",
        (p.case_id, p.hash, json.dumps(p.doc), now),
    )


def policy_chain(conn: sqlite3.Connection, policy: Policy) -> list[dict[str, Any]]:
    """The earlier versions this node knows, following `replaces` from `policy`, newest first
    (at most MAX_CHAIN): served with a release for case cards pinned before several rotations."""
    out: list[dict[str, Any]] = []
    want = policy.replaces
    while want is not None and len(out) < MAX_CHAIN:
        row = conn.execute(
            "SELECT policy FROM policy_history WHERE case_id = ? AND policy_hash = ?",
            (policy.case_id, want),
        ).fetchone()
        if row is None:
            break
        doc = json.loads(row[0])
        out.append(doc)
        want = doc["body"].get("replaces")
    return out


def _reregister(svc, conn, row, policy, envs, rules, now, chain) -> dict[str, Any]:
    cs = state_of(row)
    if row["policy_hash"] == policy.hash:
        # Idempotent: the same policy and the same envelopes give the same answer.
        stored = _stored_envelopes(conn, policy.case_id)
        if canonical_json(stored) != canonical_json(envs) and cs.state != engine.DESTROYED:
            raise Conflict("this case is already registered with different envelopes")
        return svc.receipt(policy, cs, rules, "register", policy.hash, now)
    old = svc.policy_of(row)
    path = replacement_path(policy, old.hash, [*chain, old], MAX_CHAIN + 1)
    between = path[:-1] if path is not None else None
    if between is None or policy.reporter.sign_pk != old.reporter.sign_pk:
        raise Conflict(
            "this case is already registered with a different policy",
            hint="a new policy must name the current one in 'replaces' (directly, or through"
            " the policies given in 'chain')",
        )
    if cs.state in engine.TERMINAL:
        raise Conflict(f"cannot replace the policy: the case is {cs.state}")
    # Rotation: new policy and envelopes; the state and sequence carry over, the deadline is
    # recomputed from the last heartbeat under the new interval.
    new = cs
    if cs.state in engine.WATCHING:
        new = replace(cs, deadline=cs.last_beat + rules.every, reminded=0)
    conn.execute("DELETE FROM envelopes WHERE case_id = ?", (policy.case_id,))
    _store_envelopes(conn, policy.case_id, envs)
    for p in [old, *between]:
        _remember_policy(conn, p, now)
    conn.execute(
        "UPDATE cases SET policy_hash = ?, policy = ?, version = version + 1 WHERE case_id = ?",
        (policy.hash, json.dumps(policy.doc), policy.case_id),
    )
    row = svc.load(conn, policy.case_id)
    new, effects = engine.advance(new, rules, now)
    svc.apply(conn, row, policy, cs, new, effects, now, "rotate", {"policy_hash": policy.hash})
    detail: dict[str, Any] = {"from": old.hash, "to": policy.hash}
    if between:
        detail["through"] = [p.hash for p in between]
    audit.append(conn, now, policy.case_id, "rotate_policy", detail)
    return svc.receipt(policy, new, rules, "register", policy.hash, now)


# --- heartbeats -----------------------------------------------------------------------------


def check_heartbeat_request(
    svc: NodeService,
    header: str | None,
    method: str,
    path: str,
    query: str,
    case_id: str,
    body: bytes,
) -> Outcome:
    """The heartbeat's checks in this process (verifier.py runs the same ones in a worker)."""
    try:
        req = svc.checker.authenticate(header, method, path, query, body, svc.clock.now())
    except VeladorError as exc:
        return Outcome(None, None, exc)
    try:
        return Outcome(req, svc.checker.examine(req, case_id, body), None)
    except VeladorError as exc:
        return Outcome(req, None, exc)


def heartbeat_write(
    svc: NodeService, c: CheckedHeartbeat
) -> Callable[[sqlite3.Connection], tuple[dict[str, Any], list, int | None]]:
    """The write of a checked heartbeat, for a group commit."""

    def write(conn: sqlite3.Connection) -> tuple[dict[str, Any], list, int | None]:
        now = svc.clock.now()
        consume_nonce(conn, c.req, svc.config.timestamp_tolerance)
        row = svc.load_state(conn, c.case_id)
        if row["policy_hash"] != c.policy.hash:
            raise Conflict("the case policy changed while this heartbeat was checked; retry")
        body_out, effects, wake = apply_heartbeat(
            svc, conn, row, c.policy, c.hb, c.duress, now, c.roles, c.hb_json
        )
        # Signed inside the batch and handed out only after COMMIT.
        return svc._sign("receipt", body_out), effects, wake

    return write


def finish_heartbeat(
    svc: NodeService, policy: Policy, out: tuple[dict[str, Any], list, int | None]
) -> dict[str, Any]:
    """After COMMIT: count, wake the scheduler and the outbox, hand out the receipt."""
    receipt, effects, wake = out
    svc.metrics.inc("velador_node_heartbeats_total")
    svc.after_commit(effects, queued=len(policy.nodes) > 1, wake=wake)
    return receipt


def verify_heartbeat(svc: NodeService, policy: Policy, doc: Any) -> tuple[Heartbeat, bool]:
    """Check the reporter's signature and read this node's duress marker (no database)."""
    return svc.checker.verify(policy, doc)


def apply_heartbeat(
    svc: NodeService,
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    policy: Policy,
    hb: Heartbeat,
    duress: bool,
    now: int,
    roles: dict[str, str],
    hb_json: str | None = None,
) -> tuple[dict[str, Any], list, int | None]:
    """Persist a verified heartbeat; returns the receipt body (to sign), effects, next wake.

    `hb_json` is json.dumps(hb.doc) when the caller already has it."""
    rules = svc.rules_of(policy)
    old = state_of(row)
    detail: dict[str, Any] = {"by": roles, "heartbeat": hb.hash, "beat_time": hb.time}
    if hb_json is None:
        hb_json = json.dumps(hb.doc)
    policy_hash = policy.hash
    if duress:
        # The receipt is the one a normal heartbeat would get from what the captor was shown
        # so far (the cover state, cover.py): the reporter's screen cannot tell a duress
        # check-in from a normal one, even after earlier duress requests.
        basis, policy_hash = cover.basis(conn, old, policy.hash, policy.case_id)
        shown, _ = engine.heartbeat(basis, rules, hb.seq, hb.time, now, duress=False)
        detail["duress"] = True
        new, effects = old, []
        cover.save(conn, policy.case_id, shown, policy_hash, now)  # first: no reporter notice
        if old.state in engine.TERMINAL:
            # Released on an earlier duress request: nothing more to do than note it.
            audit.append(conn, now, policy.case_id, "heartbeat", {**detail, "to": old.state})
        else:
            new, effects = engine.heartbeat(old, rules, hb.seq, hb.time, now, duress=True)
            svc.apply(conn, row, policy, old, new, effects, now, "heartbeat", detail, hb_json)
    else:
        # engine.heartbeat is pure: without duress the real transition IS the shown one.
        new, effects = engine.heartbeat(old, rules, hb.seq, hb.time, now, duress=False)
        shown = new
        svc.apply(conn, row, policy, old, new, effects, now, "heartbeat", detail, hb_json)
        if old.duress_at is not None:
            # A normal check-in after duress: the reporter is free again, the cover goes.
            cover.clear(conn, policy.case_id)
    # Gossip: forward to every other node of the case except the one that sent it to us.
    for card in policy.nodes:
        if card.sign_pk == svc.identity.card.sign_pk or roles.get("node") == card.fingerprint:
            continue
        conn.execute(
            "INSERT OR IGNORE INTO outbox (key, case_id, channel, target, payload, created,"
            " next_attempt) VALUES (?,?,?,?,?,?,0)",
            (
                f"hb:{policy.case_id}:{hb.seq}:{card.fingerprint}",
                policy.case_id,
                "peer",
                card.text,
                hb_json,
                now,
            ),
        )
    body = svc.receipt_body(policy, shown, rules, "heartbeat", hb.hash, now)
    if policy_hash != policy.hash:
        body["policy_hash"] = policy_hash
    return body, effects, engine.next_wake(new, rules)


def latest_heartbeat(svc: NodeService, req: SignedRequest, case_id: str) -> dict[str, Any]:
    def fn(conn, row, policy, roles, now):
        hb = row["last_heartbeat"]
        return {"heartbeat": json.loads(hb) if hb else None}

    return svc.read(req, case_id, {"node", "reporter"}, "read heartbeats", fn)


# --- reporter actions ------------------------------------------------------------------------
# Each carries the reporter's duress marker in its body (docs/protocol.md §3.2, §4.4); a body
# without one (an older client) is a normal request. A body that is not JSON is ignored as it
# always was, except for pause, which needs its `until`.


def marker_of(svc: NodeService, payload: Any) -> bool | None:
    """This node's reading of the request's duress marker (None: none or unreadable)."""
    if not isinstance(payload, dict):
        return None
    return open_marker(payload.get("marker"), svc.identity.box_key)


def _lenient_marker(svc: NodeService, body: bytes) -> bool | None:
    try:
        return marker_of(svc, parse_body(body, "request"))
    except VeladorError:
        return None


def pause(svc: NodeService, req: SignedRequest, case_id: str, body: bytes) -> dict[str, Any]:
    payload = parse_body(body, "pause request")
    try:
        until = require(payload, "until", int, "pause request")
    except FormatError as exc:
        raise BadRequest(str(exc)) from exc
    return svc.mutate(
        req,
        case_id,
        {"reporter"},
        "pause",
        lambda cs, r, now, _: engine.pause(cs, r, until, now),
        marker_of(svc, payload),
    )


def resume(svc: NodeService, req: SignedRequest, case_id: str, body: bytes = b"") -> dict[str, Any]:
    return svc.mutate(
        req,
        case_id,
        {"reporter"},
        "resume",
        lambda cs, r, now, _: engine.resume(cs, r, now),
        _lenient_marker(svc, body),
    )


def destroy(
    svc: NodeService, req: SignedRequest, case_id: str, body: bytes = b""
) -> dict[str, Any]:
    return svc.mutate(
        req,
        case_id,
        {"reporter"},
        "destroy",
        lambda cs, r, now, _: engine.destroy(cs, r, now),
        _lenient_marker(svc, body),
    )


def release_now(
    svc: NodeService, req: SignedRequest, case_id: str, body: bytes = b""
) -> dict[str, Any]:
    return svc.mutate(
        req,
        case_id,
        {"reporter"},
        "release_now",
        lambda cs, r, now, _: engine.release_now(cs, r, now),
        _lenient_marker(svc, body),
    )


def objection(
    svc: NodeService, req: SignedRequest, case_id: str, body: bytes = b""
) -> dict[str, Any]:
    return svc.mutate(
        req,
        case_id,
        {"reporter"},
        "object",
        lambda cs, r, now, _: engine.objection(cs, r, now),
        _lenient_marker(svc, body),
    )


def release_request(
    svc: NodeService, req: SignedRequest, case_id: str, body: bytes
) -> dict[str, Any]:
    payload = parse_body(body, "release request")
    reason = payload.get("reason", "") if isinstance(payload, dict) else None
    if not isinstance(reason, str) or len(reason) > 1000:
        raise BadRequest("release request: reason must be a string of at most 1000 characters")
    return svc.mutate(
        req,
        case_id,
        {"editor"},
        "release_request",
        lambda cs, r, now, roles: engine.editor_request(cs, r, roles["editor"], now),
    )


# --- reads ---------------------------------------------------------------------------------


def status(
    svc: NodeService, req: SignedRequest, case_id: str, marker: str | None = None
) -> dict[str, Any]:
    """`marker` (query parameter): the reporter's duress marker; under duress the answer comes
    from the cover state (cover.py)."""
    duress = open_marker(marker, svc.identity.box_key) is True

    def fn(conn, row, policy, roles, now):
        return svc.status_doc(conn, row, now, duress=duress and "reporter" in roles)

    return svc.read(
        req, case_id, {"reporter", "editor", "recipient", "node"}, "read the case status", fn
    )


def fetch_release(svc: NodeService, req: SignedRequest, case_id: str) -> dict[str, Any]:
    def fn(conn, row, policy, roles, now):
        if row["state"] != engine.RELEASED:
            raise Conflict(f"the case is not released (state {row['state']})")
        fp = roles["recipient"]
        envs = [e for e in _stored_envelopes(conn, case_id) if e["body"]["recipient"] == fp]
        audit.append(conn, now, case_id, "fetch", {"by": {"recipient": fp}, "envelopes": len(envs)})
        return {
            "case_id": case_id,
            "node": svc.fingerprint,
            "released_at": row["released_at"],
            "policy": json.loads(row["policy"]),
            "chain": policy_chain(conn, policy),
            "envelopes": envs,
        }

    return svc.read(req, case_id, {"recipient"}, "fetch released envelopes", fn)


def custody(
    svc: NodeService,
    req: SignedRequest,
    case_id: str,
    nonce_text: str,
    marker: str | None = None,
) -> dict[str, Any]:
    """Proof of custody (docs/protocol.md §3.5). Under the reporter's duress marker it answers
    from the cover state like a status (§4.4): a destroy forced under duress shows no envelope
    held, as a real destroy does (a proof over the envelopes would tell the captor it failed)."""
    try:
        nonce = b64d(nonce_text, "custody nonce", 32)
    except FormatError as exc:
        raise BadRequest(str(exc)) from exc
    duress = open_marker(marker, svc.identity.box_key) is True

    def fn(conn, row, policy, roles, now):
        envs = _stored_envelopes(conn, case_id)
        policy_hash = policy.hash
        if duress and "reporter" in roles:
            rules = svc.rules_of(policy)
            shown, policy_hash = cover.shown(conn, state_of(row), policy.hash, case_id, rules, now)
            if shown.state == engine.DESTROYED:
                envs = []
        return svc._sign(
            "custody",
            {
                "v": 1,
                "case_id": case_id,
                "policy_hash": policy_hash,
                "node": svc.fingerprint,
                "time": now,
                "nonce": nonce_text,
                "envelopes": len(envs),
                "digest": custody_digest(nonce, envs),
            },
        )

    return svc.read(
        req, case_id, {"reporter", "editor", "recipient"}, "ask for proof of custody", fn
    )


# --- notification endpoints ----------------------------------------------------------------


def _check_target(payload: Any) -> tuple[str, str]:
    try:
        channel = require(payload, "channel", str, "subscription")
        target = require(payload, "target", str, "subscription")
    except FormatError as exc:
        raise BadRequest(str(exc)) from exc
    if channel == "email":
        if len(target) > 254 or not EMAIL_RE.match(target):
            raise BadRequest("subscription: target is not an email address")
    elif channel == "webhook":
        if len(target) > 2048 or not re.match(r"^https?://[^\s/]+(/\S*)?$", target):
            raise BadRequest("subscription: target must be an http(s) URL")
    else:
        raise BadRequest("subscription: channel must be 'email' or 'webhook'")
    return channel, target


def subscribe(
    svc: NodeService, req: SignedRequest, case_id: str, body: bytes, on: bool
) -> dict[str, Any]:
    channel, target = _check_target(parse_body(body, "subscription"))
    if on and channel == "webhook":
        # Before the transaction: resolving a name may take seconds, and must not hold the
        # write lock. It says nothing about the case, so strangers learn nothing from it.
        targets.check_webhook(
            target,
            svc.config.registration,
            targets.operator_targets(svc.config),
            proxied=svc.config.proxy is not None,
        )

    def fn(conn, row, policy, roles, now):
        role = next(r for r in ("reporter", "editor", "recipient") if r in roles)
        party = b64e(req.signer)
        if on:
            n = conn.execute(
                "SELECT count(*) FROM subscriptions WHERE case_id=? AND party=?", (case_id, party)
            ).fetchone()[0]
            if n >= MAX_SUBSCRIPTIONS:
                raise Conflict(f"at most {MAX_SUBSCRIPTIONS} addresses per party and case")
            conn.execute(
                "INSERT OR IGNORE INTO subscriptions VALUES (?,?,?,?,?,?)",
                (case_id, party, role, channel, target, now),
            )
        else:
            conn.execute(
                "DELETE FROM subscriptions WHERE case_id=? AND party=? AND channel=? AND target=?",
                (case_id, party, channel, target),
            )
        # The address itself is not logged: only that one changed.
        audit.append(
            conn,
            now,
            case_id,
            "subscribe" if on else "unsubscribe",
            {"by": roles, "channel": channel},
        )
        rows = conn.execute(
            "SELECT channel, target FROM subscriptions WHERE case_id=? AND party=? ORDER BY 1, 2",
            (case_id, party),
        )
        return {"case_id": case_id, "role": role, "subscriptions": [dict(r) for r in rows]}

    return svc.read(req, case_id, PARTIES, "register a notification address", fn)


def inbox(svc: NodeService, req: SignedRequest, after: int, limit: int) -> dict[str, Any]:
    try:
        with svc.store.tx() as conn:
            consume_nonce(conn, req, svc.config.timestamp_tolerance)
            rows = conn.execute(
                "SELECT id, notice FROM notices WHERE audience = ? AND id > ? ORDER BY id LIMIT ?",
                (b64e(req.signer), after, limit),
            ).fetchall()
    except Replay:
        raise
    return {"notices": [{"id": r["id"], "notice": json.loads(r["notice"])} for r in rows]}


def case_view(svc: NodeService, conn: sqlite3.Connection, case_id: str) -> CaseState:
    return state_of(svc.load(conn, case_id))
