"""The node's case operations (docs/protocol.md §4, §5, §6).

Each operation authenticates, then runs ONE database transaction that: consumes the request
nonce, loads the case, checks the signer's role against the policy, runs the pure engine
(engine.py), writes the new state with a version guard, appends the audit entry and queues the
notices. The answer is built inside the transaction and returned only after COMMIT.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from vault.errors import AuthenticationError, VeladorError
from vault.identity import Identity
from vault.policy import Policy
from vault.signing import sign_document

from . import audit, cover, engine, notices
from .admission import RegistrationRequests
from .auth import SignedRequest, consume_nonce, verify_request
from .config import NodeConfig
from .db import Store
from .engine import CaseState, Effect, Rules
from .errors import BadRequest, Conflict, Forbidden, Replay, no_case
from .hbcheck import HeartbeatChecker
from .loopcommit import LoopCommitter
from .metrics import Metrics
from .policies import CachedPolicy, PolicyCache, roles_of
from .ratelimit import RateLimiter
from .verifier import VerifierPool

OPERATOR_EVENTS = {
    "overdue",
    "editor_pending",
    "duress",
    "destroy_pending",
    "released",
    "destroyed",
}
SWEEP_BATCH = 256
_STATE_COLS = (
    "state",
    "seq",
    "last_beat",
    "deadline",
    "reminded",
    "warned",
    "paused_until",
    "pending_until",
    "destroy_at",
    "prior",
    "editors",
    "released_at",
    "release_reason",
    "duress_at",
)

# Column names from the constant above; the case id is a bound parameter.
_LOAD_STATE = (
    f"SELECT case_id, policy_hash, version, {', '.join(_STATE_COLS)} FROM cases"  # noqa: S608
    " WHERE case_id = ?"
)
# Column names come from the constant _STATE_COLS; every value is a bound parameter.
_UPDATE_STATE = (
    f"UPDATE cases SET {', '.join(f'{c} = ?' for c in _STATE_COLS)},"  # noqa: S608
    " next_wake = ?, updated = ?, version = version + 1"
)


def _editor_requests(text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The `editors` column: a JSON list of [fingerprint, time counted] pairs. Rows written
    before request times were kept hold bare fingerprints; they get no time (engine._times
    treats those requests as lapsed)."""
    fps: list[str] = []
    times: list[int] = []
    for item in json.loads(text):
        if isinstance(item, list):
            fps.append(item[0])
            times.append(item[1])
        else:
            fps.append(item)
    return tuple(fps), tuple(times) if len(times) == len(fps) else ()


PUBLIC_RELEASE_REASONS = ("deadline", "editors", "reporter")


def public_release_reason(reason: str | None) -> str | None:
    """The rule that released the case, as status shows it (docs/protocol.md §3.4): a release
    the duress marker caused shows no reason, since status never shows duress."""
    return reason if reason in PUBLIC_RELEASE_REASONS else None


def state_of(row: sqlite3.Row) -> CaseState:
    editors, editor_times = _editor_requests(row["editors"])
    return CaseState(
        state=row["state"],
        seq=row["seq"],
        last_beat=row["last_beat"],
        deadline=row["deadline"],
        reminded=row["reminded"],
        warned=bool(row["warned"]),
        paused_until=row["paused_until"],
        pending_until=row["pending_until"],
        destroy_at=row["destroy_at"],
        prior=row["prior"],
        editors=editors,
        editor_times=editor_times,
        released_at=row["released_at"],
        release_reason=row["release_reason"],
        duress_at=row["duress_at"],
    )


def _state_values(cs: CaseState) -> list[Any]:
    values: list[Any] = []
    for col in _STATE_COLS:
        v = getattr(cs, col)
        if col == "editors":
            times = cs.editor_times if len(cs.editor_times) == len(v) else (0,) * len(v)
            v = json.dumps([[fp, t] for fp, t in zip(v, times, strict=True)])
        elif col == "warned":
            v = int(v)
        values.append(v)
    return values


ACTION_WORDS = {
    "release_request": "request a release",
    "release_now": "release the case",
    "pause": "pause the case",
    "resume": "resume the case",
    "destroy": "destroy the case",
    "object": "object to a release",
}
"""Internal action names (audit log, receipts) as the words a refused person reads."""


class NodeService:
    def __init__(
        self,
        config: NodeConfig,
        identity: Identity,
        store: Store,
        clock: Any,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.store = store
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.limiter = RateLimiter(config.rate_per_key, config.rate_burst)
        self.on_change: Callable[[int | None, bool], None] = lambda wake, queued: None
        """Called after each commit with a case's new wake-up time and whether deliveries were
        queued; the scheduler uses it to move its exact-time job and to kick the outbox."""
        self.policies = PolicyCache()
        self._peer_keys: set[bytes] = set()
        # Computed once: a fingerprint is a hash and a base32 encoding, and every receipt,
        # status and duress marker lookup needs this node's.
        self._fingerprint = identity.fingerprint
        self.checker = HeartbeatChecker(
            identity.card.sign_pk,
            self._fingerprint,
            identity.box_key,
            config.timestamp_tolerance,
            self.policies,
            store.snapshot,
        )
        """The heartbeat's checks before its write (hbcheck.py; also run by verifier.py)."""
        self.verifiers: VerifierPool | None = None
        """Heartbeat check worker processes, while `node serve` runs them (verifier.py)."""
        self.clock_alarms: dict[str, int] = {}
        """case id -> when a release was last refused by the clock check (clockcheck.py)."""
        self.clock_alarms_held: set[str] = set()
        """Cases whose last clock alarm held the release (its notice said so)."""
        self.registration_requests = RegistrationRequests()
        """Reporters refused by closed registration, for the operator's dashboard."""
        self.clock_holds: dict[str, tuple[int, float]] = {}
        """case id -> (last check-in, monotonic start) of a release the clock check holds."""
        self.committer = LoopCommitter(store)
        """The heartbeat path's group commit, driven by the event loop (loopcommit.py)."""

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def close(self) -> None:
        """Stop the heartbeat commit thread (the store is closed by its owner)."""
        self.committer.close()

    # --- authentication -------------------------------------------------------------------

    def authenticate(
        self, header: str | None, method: str, path: str, query: str, body: bytes
    ) -> SignedRequest:
        req = verify_request(
            header,
            method,
            path,
            query,
            body,
            self.identity.card.sign_pk,
            self.clock.now(),
            self.config.timestamp_tolerance,
        )
        self.limit(req)
        return req

    def limit(self, req: SignedRequest) -> None:
        """The per-key rate limit (RateLimited), after the signature was checked."""
        rate = self.config.peer_rate_per_key if req.signer in self._peer_keys else None
        self.limiter.check(req.signer, rate)

    def burn_nonce(self, req: SignedRequest) -> None:
        """After a refused but authenticated request: remember its nonce anyway."""
        with self.store.tx() as conn:
            self.nonce_burner(req)(conn)

    def nonce_burner(self, req: SignedRequest) -> Callable[[sqlite3.Connection], None]:
        """burn_nonce as a write for a batch (the heartbeat path burns through its committer)."""

        def burn(conn: sqlite3.Connection) -> None:
            with contextlib.suppress(Replay):
                consume_nonce(conn, req, self.config.timestamp_tolerance)

        return burn

    # --- helpers --------------------------------------------------------------------------

    def policy_of(self, row: sqlite3.Row) -> CachedPolicy:
        """The row's policy, parsed and verified once per policy version (PolicyCache)."""
        return self.policies.of_row(row)

    def _cached_policy(self, policy_hash: str) -> CachedPolicy | None:
        return self.policies.get(policy_hash)

    def current_policy(self, conn: sqlite3.Connection, case_id: str) -> CachedPolicy:
        """The case's current policy (PolicyCache.current)."""
        return self.policies.current(conn, case_id)

    @staticmethod
    def load(conn: sqlite3.Connection, case_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise no_case(case_id)
        return row

    @staticmethod
    def load_state(conn: sqlite3.Connection, case_id: str) -> sqlite3.Row:
        """The columns a state transition reads (state_of, apply), without the policy and the
        last heartbeat texts."""
        row = conn.execute(_LOAD_STATE, (case_id,)).fetchone()
        if row is None:
            raise no_case(case_id)
        return row

    def roles(self, policy: Policy, signer: bytes) -> dict[str, str]:
        """role -> fingerprint of the signer's card in that role."""
        out = roles_of(policy, signer, self.identity.card.sign_pk)
        self.note_roles(signer, out)
        return out

    def note_roles(self, signer: bytes, roles: dict[str, str]) -> None:
        """A peer node seen once gets the peer rate limit from then on."""
        if "node" in roles:
            self._peer_keys.add(signer)

    @staticmethod
    def rules_of(policy: Policy) -> Rules:
        if isinstance(policy, CachedPolicy):
            return policy.rules
        assert policy.switch is not None
        return Rules.from_switch(policy.switch)

    def _sign(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return sign_document(kind, body, self.identity.sign_key)

    def receipt(
        self, policy: Policy, cs: CaseState, rules: Rules, action: str, ref: str, now: int
    ) -> dict[str, Any]:
        return self._sign("receipt", self.receipt_body(policy, cs, rules, action, ref, now))

    def receipt_body(
        self, policy: Policy, cs: CaseState, rules: Rules, action: str, ref: str, now: int
    ) -> dict[str, Any]:
        return dict(
            {
                "v": 1,
                "action": action,
                "case_id": policy.case_id,
                "policy_hash": policy.hash,
                "node": self.fingerprint,
                "time": now,
                "state": cs.state,
                "seq": cs.seq,
                "deadline": cs.deadline if cs.state in engine.WATCHING else None,
                "release_at": engine.release_time(cs, rules),
                "paused_until": cs.paused_until,
                "ref": ref,
            },
        )

    def status_doc(
        self, conn: sqlite3.Connection, row: sqlite3.Row, now: int, duress: bool = False
    ) -> dict[str, Any]:
        """The signed status; from the cover state when the reporter's request carried the
        duress marker (cover.py), so a captor sees what a normal request would show."""
        policy = self.policy_of(row)
        rules = self.rules_of(policy)
        cs = state_of(row)
        policy_hash = policy.hash
        n_env = conn.execute(
            "SELECT count(*) FROM envelopes WHERE case_id = ?", (policy.case_id,)
        ).fetchone()[0]
        if duress:
            cs, policy_hash = cover.shown(conn, cs, policy.hash, policy.case_id, rules, now)
            n_env = 0 if cs.state == engine.DESTROYED else n_env
        return self._sign(
            "status",
            {
                "v": 1,
                "case_id": policy.case_id,
                "policy_hash": policy_hash,
                "node": self.fingerprint,
                "time": now,
                "state": cs.state,
                "seq": cs.seq,
                "last_beat": cs.last_beat,
                "deadline": cs.deadline if cs.state in engine.WATCHING else None,
                "release_at": engine.release_time(cs, rules),
                "paused_until": cs.paused_until,
                "pending_until": cs.pending_until,
                "destroy_at": cs.destroy_at,
                "editor_requests": len(cs.editors),
                "editor_quorum": rules.editor_quorum,
                "envelopes": n_env,
                "released_at": cs.released_at,
                "release_reason": public_release_reason(cs.release_reason),
            },
        )

    # --- the single write path ---------------------------------------------------------------

    def apply(
        self,
        conn: sqlite3.Connection,
        row: sqlite3.Row,
        policy: Policy,
        old: CaseState,
        new: CaseState,
        effects: list[Effect],
        now: int,
        action: str,
        detail: dict[str, Any],
        last_heartbeat: str | None = None,
        reporter_events: set[str] | None = None,
    ) -> None:
        """Persist a transition with its audit entry and notices, inside the caller's tx.

        `reporter_events`: the only events the reporter may be told of (None: all of them,
        unless the case is under a duress cover, which tells the reporter nothing)."""
        if new == old and not effects and last_heartbeat is None:
            return
        case_id = row["case_id"]
        if policy.case_id != case_id:
            # A row whose stored policy names another case is corrupt; writing through it would
            # touch the other case's row (the version guard below is the row's, not the policy's).
            raise Conflict(f"case {case_id}: the stored policy names another case")
        rules = self.rules_of(policy)
        values = [*_state_values(new), engine.next_wake(new, rules), now]
        sql = _UPDATE_STATE
        if last_heartbeat is not None:
            sql += ", last_heartbeat = ?"
            values.append(last_heartbeat)
        # The version guard plus the terminal-state guard make a double release impossible
        # even if two writers raced: the second UPDATE matches no row.
        sql += " WHERE case_id = ? AND version = ? AND state NOT IN ('RELEASED', 'DESTROYED')"
        values += [case_id, row["version"]]
        if conn.execute(sql, values).rowcount != 1:
            raise Conflict("the case changed concurrently or is final; retry")
        for e in effects:
            if e.kind == "delete_envelopes":
                conn.execute("DELETE FROM envelopes WHERE case_id = ?", (policy.case_id,))
        seen: set[str] = set()
        # While the case is under a duress cover (cover.py), the reporter is told only what the
        # cover's own transition gives: the captor holds their devices, and an "overdue" after
        # a forced pause would tell.
        allowed = reporter_events
        if (
            allowed is None
            and any(e.kind == "notify" and e.audience == "reporter" for e in effects)
            and cover.exists(conn, policy.case_id)
        ):
            allowed = set()
        withheld: list[str] = []
        for e in effects:
            if e.kind != "notify":
                continue
            if e.audience == "reporter" and allowed is not None and e.event not in allowed:
                withheld.append(f"notify:{e.event}:{e.audience}")
                continue
            notices.emit(
                conn,
                self.identity,
                self.config,
                policy,
                new,
                rules,
                e.event,
                e.audience,
                now,
                operator_copy=e.event in OPERATOR_EVENTS and e.event not in seen,
            )
            seen.add(e.event)
        entry = {
            "action": action,
            "from": old.state,
            "to": new.state,
            "seq": new.seq,
            **detail,
            # The effects carried out: a notice withheld under a duress cover is listed apart,
            # so the audit log and the outbox agree (chaos invariant (e)).
            "effects": [
                name
                for e in effects
                if (name := f"{e.kind}:{e.event}:{e.audience}".rstrip(":")) not in withheld
            ],
        }
        if withheld:
            entry["withheld"] = withheld
        audit.append(conn, now, policy.case_id, action, entry)

    def after_commit(
        self, effects: Iterable[Effect], queued: bool = False, wake: int | None = None
    ) -> None:
        effects = list(effects)
        for e in effects:
            if e.kind == "release":
                self.metrics.inc("velador_node_releases_total")
        queued = queued or any(e.kind == "notify" for e in effects)
        self.on_change(wake, queued)

    def mutate(
        self,
        req: SignedRequest,
        case_id: str,
        allowed: set[str],
        action: str,
        op: Callable[[CaseState, Rules, int, dict[str, str]], tuple[CaseState, list[Effect]]],
        duress: bool | None = None,
    ) -> dict[str, Any]:
        """Run one signed state-changing request.

        `duress`: the reporter's marker (None: the request had none, or it is not the
        reporter's). True: the action is applied to the cover state and answered from it, the
        real case gets engine.duress_signal instead (docs/protocol.md §4.4); a refusal the cover
        gives is raised only after the alarm is committed."""
        refusal: VeladorError | None = None
        try:
            with self.store.tx() as conn:
                now = self.clock.now()
                consume_nonce(conn, req, self.config.timestamp_tolerance)
                row = self.load(conn, case_id)
                policy = self.policy_of(row)
                roles = self.roles(policy, req.signer)
                if not roles:
                    raise no_case(case_id)
                if not roles.keys() & allowed:
                    what = ACTION_WORDS.get(action, action.replace("_", " "))
                    raise Forbidden(f"the case policy does not allow you to {what}")
                rules = self.rules_of(policy)
                old = state_of(row)
                by = {r: fp for r, fp in roles.items() if r in allowed}
                if duress and "reporter" in roles:
                    receipt, effects, wake, refusal = self._mutate_under_duress(
                        conn, row, policy, rules, old, op, roles, by, action, req, now
                    )
                else:
                    new, effects = op(old, rules, now, roles)
                    shown = self._follow_cover(conn, old, policy, rules, op, roles, now, duress)
                    self.apply(
                        conn, row, policy, old, new, effects, now, action, {"by": by}, None, shown
                    )
                    receipt = self.receipt(policy, new, rules, action, req.nonce, now)
                    wake = engine.next_wake(new, rules)
        except Replay:
            raise
        except VeladorError:
            self.burn_nonce(req)
            raise
        self.after_commit(effects, wake=wake)
        if refusal is not None:
            raise refusal
        return receipt

    def _mutate_under_duress(self, conn, row, policy, rules, old, op, roles, by, action, req, now):
        """The duress half of mutate: the cover moves, the real case raises the alarm."""
        basis, policy_hash = cover.basis(conn, old, policy.hash, policy.case_id)
        basis, _ = engine.advance(basis, rules, now, synced=True)
        refusal: VeladorError | None = None
        try:
            shown, _ = op(basis, rules, now, roles)
        except VeladorError as exc:
            refusal, shown = exc, basis
        real, effects = old, []
        if action == "resume" and old.state == engine.PAUSED:
            # Ending a real pause only brings a release closer: it is done for real.
            real, effects = engine.resume(old, rules, now)
        real, more = engine.duress_signal(real, rules, now)
        effects += more
        detail = {"by": by, "duress": True}
        # Saved first: while a cover exists, apply() sends the reporter no notice.
        cover.save(conn, policy.case_id, shown, policy_hash, now)
        if old.state in engine.TERMINAL:
            audit.append(conn, now, policy.case_id, action, {**detail, "to": old.state})
        else:
            self.apply(conn, row, policy, old, real, effects, now, action, detail)
        body = self.receipt_body(policy, shown, rules, action, req.nonce, now)
        receipt = self._sign("receipt", dict(body, policy_hash=policy_hash))
        return receipt, effects, engine.next_wake(real, rules), refusal

    def _follow_cover(self, conn, old, policy, rules, op, roles, now, marker) -> set[str] | None:
        """Keep a stored cover in step with what others do (an editor's request shows in the
        captor's view as it would have); a reporter request with the normal marker drops it.
        Returns the events the reporter may be told of (those the cover's own transition
        gives), or None when there is no cover."""
        if "reporter" in roles and marker is False:
            cover.clear(conn, policy.case_id)
            return None
        if "reporter" in roles or not cover.exists(conn, policy.case_id):
            return None
        basis, policy_hash = cover.basis(conn, old, policy.hash, policy.case_id)
        basis, _ = engine.advance(basis, rules, now, synced=True)
        try:
            shown, effects = op(basis, rules, now, roles)
        except VeladorError:
            return set()
        cover.save(conn, policy.case_id, shown, policy_hash, now)
        return {e.event for e in effects if e.kind == "notify" and e.audience == "reporter"}

    def read(
        self,
        req: SignedRequest,
        case_id: str,
        allowed: set[str],
        what: str,
        fn: Callable[[sqlite3.Connection, sqlite3.Row, Policy, dict[str, str], int], Any],
    ) -> Any:
        """Run one signed read (the nonce is still consumed: requests are one-shot)."""
        try:
            with self.store.tx() as conn:
                now = self.clock.now()
                consume_nonce(conn, req, self.config.timestamp_tolerance)
                row = self.load(conn, case_id)
                policy = self.policy_of(row)
                roles = self.roles(policy, req.signer)
                if not roles:
                    raise no_case(case_id)
                if not roles.keys() & allowed:
                    raise Forbidden(f"the case policy does not allow you to {what}")
                return fn(conn, row, policy, roles, now)
        except Replay:
            raise
        except VeladorError:
            self.burn_nonce(req)
            raise


def as_bad_request(exc: VeladorError) -> VeladorError:
    """Policy/envelope documents failing verification are bad input, not failed request auth."""
    if isinstance(exc, AuthenticationError):
        return BadRequest(str(exc))
    return exc
