"""Model-based test: no drill message changes a case's real state (docs/protocol.md §11.6).

A hypothesis RuleBasedStateMachine drives two in-process node services that share one node
identity and one injected clock, each with its own database: the *drilled* node gets every real
message (heartbeats, editor requests, objections, time passing) AND random drill messages
(starts, valid answers, answers replayed, forged, for unknown drills, out of order, an editor's
drill-only request presented as a real release request); the *control* node gets only the real
messages. After every step the real state of the case (every column of its row, its envelopes)
is the same at both, and a small reference model says when silence must have released the case:
a real deadline during a drill still releases on time.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from escrow_node import drills
from escrow_node import operations as ops
from escrow_node.config import NodeConfig, RegistrationConfig
from escrow_node.db import Store
from escrow_node.service import _STATE_COLS, NodeService
from escrow_node.sweep import sweep
from tests.fuzz.profiles import fuzz_settings
from tests.node.builders import T0, World, make_world, person
from vault.clock import FakeClock
from vault.encoding import b64e, canonical_json
from vault.errors import VeladorError
from vault.nodeproto.auth import sign_request
from vault.nodeproto.messages import make_drill_answer, make_drill_request, make_heartbeat

EVERY, GRACE = 3600, 600
_WORLD: dict[str, object] = {}


def world() -> tuple[World, object]:
    """People and a policy made once (identities cost an Argon2id each)."""
    if not _WORLD:
        root = Path(tempfile.mkdtemp(prefix="velador-drill-model-"))
        node = person(root / "node", "node-m", "node", "http://127.0.0.1:9")
        _WORLD["node"] = node
        _WORLD["world"] = make_world(
            root / "people",
            [node.card],
            every=EVERY,
            grace=GRACE,
            remind=(),
            quorum=2,
            objection_window=300,
            n_editors=2,
        )
    return _WORLD["world"], _WORLD["node"]  # type: ignore[return-value]


class Node:
    def __init__(self, root: Path, identity, clock: FakeClock) -> None:
        cfg = NodeConfig(
            data_dir=root,
            name="node-m",
            url="http://127.0.0.1:9",
            registration=RegistrationConfig(mode="open", allow_private_targets=True),
        )
        root.mkdir(parents=True, exist_ok=True)
        self.store = Store(root / "node.db")
        self.svc = NodeService(cfg, identity, self.store, clock)

    def call(self, who, method: str, path: str, payload, fn, case_id: str, header=None):
        body = b"" if payload is None else canonical_json(payload)
        header = header or sign_request(
            who.sign_key,
            self.svc.identity.card.sign_pk,
            method,
            path,
            body,
            self.svc.clock.now(),
            case_id,
            "",
        )
        try:
            req = self.svc.authenticate(header, method, path, "", body)
            return fn(self.svc, req, body)
        except VeladorError as exc:
            return exc

    def heartbeat(self, doc, who, case_id):
        path = f"/v1/cases/{case_id}/heartbeat"
        body = canonical_json(doc)
        header = sign_request(
            who.sign_key,
            self.svc.identity.card.sign_pk,
            "POST",
            path,
            body,
            self.svc.clock.now(),
            case_id,
            "",
        )
        out = ops.check_heartbeat_request(self.svc, header, "POST", path, "", case_id, body)
        if out.error is not None:
            return out.error
        try:
            with self.store.tx() as conn:
                return ops.heartbeat_write(self.svc, out.checked)(conn)
        except VeladorError as exc:
            return exc

    def real(self, case_id: str):
        with self.store.read() as conn:
            row = conn.execute(
                f"SELECT {', '.join(_STATE_COLS)}, next_wake, policy_hash FROM cases"
                " WHERE case_id = ?",
                (case_id,),
            ).fetchone()
            envs = conn.execute(
                "SELECT count(*) FROM envelopes WHERE case_id = ?", (case_id,)
            ).fetchone()[0]
        return tuple(row), envs

    def close(self) -> None:
        self.svc.close()
        self.store.close()


class DrillMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.w, node_ident = world()
        self.cid = self.w.policy.case_id
        self.clock = FakeClock(T0)
        self.tmp = Path(tempfile.mkdtemp(prefix="velador-drill-run-"))
        self.drilled = Node(self.tmp / "drilled", node_ident, self.clock)
        self.control = Node(self.tmp / "control", node_ident, self.clock)
        payload = {"policy": self.w.policy.doc, "envelopes": self.w.envs_for(node_ident.card)}
        for n in (self.drilled, self.control):
            out = n.call(self.w.reporter, "POST", "/v1/cases", payload, ops.register, None)
            assert isinstance(out, dict), out
        self.seq = 0
        self.last_beat = T0
        self.drill_ids: list[str] = []
        self.answers: list[tuple[object, dict]] = []
        self.requests: list[dict] = []
        self.accepted: set[str] = set()

    def teardown(self):
        for n in ("drilled", "control"):
            if hasattr(self, n):
                getattr(self, n).close()

    def both(self, fn):
        a, b = fn(self.drilled), fn(self.control)
        assert type(a) is type(b), (a, b)  # the same outcome at both nodes

    # --- real messages (both nodes) -------------------------------------------------------------

    @rule(dt=st.one_of(st.integers(1, 120), st.integers(100, 2 * (EVERY + GRACE))))
    def time_passes(self, dt):
        self.clock.set(self.clock.now() + dt)
        sweep(self.drilled.svc)
        sweep(self.control.svc)

    @rule()
    def heartbeat(self):
        self.seq += 1
        doc = make_heartbeat(self.w.policy, self.w.reporter.sign_key, self.seq, self.clock.now())
        a = self.drilled.heartbeat(doc, self.w.reporter, self.cid)
        b = self.control.heartbeat(doc, self.w.reporter, self.cid)
        assert type(a) is type(b)
        if not isinstance(a, VeladorError):
            self.last_beat = max(self.last_beat, self.clock.now())

    @rule(i=st.integers(0, 1))
    def editor_request(self, i):
        path = f"/v1/cases/{self.cid}/release-request"
        self.both(
            lambda n: n.call(
                self.w.editors[i],
                "POST",
                path,
                {"reason": ""},
                lambda s, r, b: ops.release_request(s, r, self.cid, b),
                self.cid,
            )
        )

    @rule()
    def objection(self):
        path = f"/v1/cases/{self.cid}/object"
        self.both(
            lambda n: n.call(
                self.w.reporter,
                "POST",
                path,
                {},
                lambda s, r, b: ops.objection(s, r, self.cid, b),
                self.cid,
            )
        )

    # --- drill messages (the drilled node only) ---------------------------------------------

    @rule(again=st.booleans())
    def drill_start(self, again):
        drill = self.drill_ids[-1] if again and self.drill_ids else "d" + secrets.token_hex(4)
        self.drill_ids.append(drill)
        self.drilled.call(
            self.w.reporter,
            "POST",
            f"/v1/cases/{self.cid}/drill",
            {"drill": drill},
            lambda s, r, b: drills.start(s, r, self.cid, b),
            self.cid,
        )

    def _offer(self, who):
        return self.drilled.call(
            who,
            "GET",
            f"/v1/cases/{self.cid}/drill",
            None,
            lambda s, r, b: drills.challenge(s, r, self.cid),
            self.cid,
        )

    @rule(
        who=st.sampled_from(["r0", "r1", "e0", "e1", "outsider", "reporter"]),
        forge=st.sampled_from(["none", "proof", "signer", "drill", "node"]),
    )
    def drill_answer(self, who, forge):
        people = {
            "r0": self.w.recipients[0],
            "r1": self.w.recipients[1],
            "e0": self.w.editors[0],
            "e1": self.w.editors[1],
            "outsider": self.w.outsider,
            "reporter": self.w.reporter,
        }
        p = people[who]
        offer = self._offer(p)
        node_fp = self.drilled.svc.fingerprint
        drill = offer["body"]["drill"] if isinstance(offer, dict) else "dnone"
        chs = offer["body"]["challenges"] if isinstance(offer, dict) else []
        role = "editor" if who.startswith("e") else "recipient"
        ch = next((c for c in chs if c["role"] == role), {"challenge": b64e(b"x" * 32)})
        if role == "editor":
            proof = make_drill_request(
                p.sign_key, self.cid, drill, node_fp, ch["challenge"], self.clock.now()
            )
            self.requests.append(proof)
        else:
            from vault.drill import open_challenge

            proof = open_challenge(p, ch["challenge"])
        if forge == "proof":
            proof = b64e(secrets.token_bytes(32))
        signer = self.w.outsider if forge == "signer" else p
        doc = make_drill_answer(
            signer.sign_key,
            case_id=self.cid,
            drill="dunknown" if forge == "drill" else drill,
            node="x" * 16 if forge == "node" else node_fp,
            role=role,
            proof=proof,
            reached=[node_fp],
            stores={"checked": 1, "ok": 1},
            version="0.1.0",
            now=self.clock.now(),
        )
        self.answers.append((p, doc))
        out = self.drilled.call(
            p,
            "POST",
            f"/v1/cases/{self.cid}/drill/answer",
            doc,
            lambda s, r, b: drills.answer(s, r, self.cid, b),
            self.cid,
        )
        if isinstance(out, dict):
            self.accepted.add(doc["sig"])
            if forge in ("signer", "drill", "node"):
                raise AssertionError(f"a forged answer ({forge}) was accepted")
            if forge == "proof":
                assert out["body"]["proofs"]["key"] is False

    @rule(data=st.data())
    def replay_answer(self, data):
        if not self.answers:
            return
        p, doc = data.draw(st.sampled_from(self.answers))
        out = self.drilled.call(
            p,
            "POST",
            f"/v1/cases/{self.cid}/drill/answer",
            doc,
            lambda s, r, b: drills.answer(s, r, self.cid, b),
            self.cid,
        )
        if doc["sig"] in self.accepted:  # an answer is taken once, never replayed
            assert isinstance(out, VeladorError)
        elif isinstance(out, dict):
            self.accepted.add(doc["sig"])

    @rule(data=st.data(), as_header=st.booleans())
    def drill_request_as_real_request(self, data, as_header):
        """An editor's drill-only request, presented as a real release request."""
        if not self.requests:
            return
        req = data.draw(st.sampled_from(self.requests))
        path = f"/v1/cases/{self.cid}/release-request"
        header = "Velador " + b64e(canonical_json(req if as_header else dict(req, kind="request")))
        out = self.drilled.call(
            self.w.editors[0],
            "POST",
            path,
            {"reason": ""},
            lambda s, r, b: ops.release_request(s, r, self.cid, b),
            self.cid,
            header=header,
        )
        assert isinstance(out, VeladorError)

    @rule()
    def drill_scheduled(self):
        drills.start_scheduled(self.drilled.svc)

    # --- after every step ----------------------------------------------------------------------

    @invariant()
    def same_real_state(self):
        if not hasattr(self, "drilled"):
            return
        assert self.drilled.real(self.cid) == self.control.real(self.cid)

    @invariant()
    def releases_on_time(self):
        if not hasattr(self, "drilled"):
            return
        (row, _envs) = self.drilled.real(self.cid)
        state = row[0]
        if self.clock.now() >= self.last_beat + EVERY + GRACE:
            # silence lasted every + grace: released (or by the editors earlier)
            assert state == "RELEASED", (state, self.clock.now() - self.last_beat)


DrillMachine.TestCase.settings = fuzz_settings(25, 0.1)
TestDrillModel = DrillMachine.TestCase
