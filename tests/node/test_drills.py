"""Drills at one node, in process (docs/protocol.md §11; issue 13).

A drill is a separate state machine: it sends notices and records proofs, and never changes
the case's real state. These tests drive the node's real API with real signed requests.
"""

from __future__ import annotations

import json

import httpx
import pytest

from escrow_node import drills
from tests.node.conftest import InprocNode
from vault import drill as vdrill
from vault.errors import FormatError, NotFoundError, PolicyError
from vault.nodeproto.auth import sign_request
from vault.nodeproto.messages import make_drill_answer, make_drill_request

REAL = "SELECT * FROM cases"


@pytest.fixture
def case(inproc, world_for):
    w = world_for(inproc.card, n_recipients=2, n_editors=2, quorum=1)
    inproc.client(w.reporter).register_case(w.policy, w.envs_for(inproc.card))
    return w


def real_state(node: InprocNode):
    return [tuple(r) for r in node.query(REAL)]


def test_a_drill_notifies_everyone_and_changes_no_real_state(inproc, case):
    cid = case.policy.case_id
    before = real_state(inproc)
    receipt = inproc.client(case.reporter).drill_start(cid, "d1")
    assert receipt["action"] == "drill" and receipt["state"] == "ARMED"
    # every recipient, editor and the reporter got a drill notice, marked as a drill
    for who in [*case.recipients, *case.editors, case.reporter]:
        got = [n["notice"] for n in inproc.client(who).inbox() if n["notice"]["event"] == "drill"]
        assert len(got) == 1, who.card.name
        assert "SIMULACRO" in got[0]["text"] and "DRILL" in got[0]["text"]
        assert got[0]["drill"]["id"] == "d1"
    assert real_state(inproc) == before
    audit = inproc.query("SELECT detail FROM audit WHERE event = 'drill'")
    assert json.loads(audit[0][0])["drill"] == "d1"
    # a retried start is answered again and sends nothing twice
    inproc.client(case.reporter).drill_start(cid, "d1")
    assert len(inproc.query("SELECT 1 FROM notices")) == 5
    # another drill while this one is open is refused
    with pytest.raises(PolicyError):
        inproc.client(case.reporter).drill_start(cid, "d2")


def test_answers_prove_the_key_and_are_recorded_signed_in_the_audit_chain(inproc, case):
    cid = case.policy.case_id
    inproc.client(case.reporter).drill_start(cid, "d1")
    before = real_state(inproc)
    out = vdrill.answer(case.recipients[0], cid, [inproc.card], [], inproc.clock, 10)
    assert [n.error for n in out.nodes] == [None]
    proofs = out.nodes[0].proofs
    assert proofs["key"] and proofs["reach"] and proofs["software"]
    assert proofs["stores"]  # none given: the stores the node names (K agree) were checked
    again = vdrill.answer(case.recipients[0], cid, [inproc.card], [], inproc.clock, 10)
    assert again.nodes == [] and again.already == 1  # a second run sends nothing again
    ed = vdrill.answer(case.editors[0], cid, [inproc.card], [], inproc.clock, 10)
    assert ed.nodes[0].proofs["key"]
    rows = inproc.query("SELECT detail FROM audit WHERE event = 'drill_answer'")
    details = [json.loads(r[0]) for r in rows]
    assert {d["role"] for d in details} == {"recipient", "editor"}
    assert all(len(d["answer"]) == 64 for d in details)
    stored = inproc.query("SELECT answer FROM drill_parties WHERE answered IS NOT NULL")
    assert all(json.loads(r[0])["kind"] == "drill-answer" for r in stored)
    assert real_state(inproc) == before  # no editor request counted, nothing moved


def _offer(inproc, who, cid):
    return inproc.client(who).drill_challenge(cid)


def test_forged_and_replayed_answers_are_refused(inproc, case):
    cid = case.policy.case_id
    inproc.client(case.reporter).drill_start(cid, "d1")
    r0, r1 = case.recipients
    offer = _offer(inproc, r0, cid)
    ch = offer["challenges"][0]
    opened = vdrill.open_challenge(r0, ch["challenge"])

    def doc(signer, proof, role="recipient"):
        return make_drill_answer(
            signer.sign_key,
            case_id=cid,
            drill="d1",
            node=inproc.card.fingerprint,
            role=role,
            proof=proof,
            reached=[inproc.card.fingerprint],
            stores=None,
            version="0.1.0",
            now=inproc.clock.now(),
        )

    # another recipient's key cannot open r0's challenge: its guess fails the key proof
    assert vdrill.open_challenge(r1, ch["challenge"]) is None
    # an answer signed by r0 but sent by r1 is refused (the signer must be the requester)
    with pytest.raises(FormatError):
        inproc.client(r1).drill_answer(cid, doc(r0, opened))
    # a stranger gets the unknown-case answer
    with pytest.raises(NotFoundError):
        inproc.client(case.outsider).drill_answer(cid, doc(case.outsider, opened))
    # a wrong opening is recorded as a failed key proof
    bad = inproc.client(r1).drill_answer(cid, doc(r1, opened))
    assert bad["proofs"]["key"] is False
    good = inproc.client(r0).drill_answer(cid, doc(r0, opened))
    assert good["proofs"]["key"] is True
    # the same answer again (a replay, with a fresh request) is refused
    with pytest.raises(PolicyError):
        inproc.client(r0).drill_answer(cid, doc(r0, opened))
    # an answer to a drill that does not exist
    other = make_drill_answer(
        r0.sign_key,
        case_id=cid,
        drill="nope",
        node=inproc.card.fingerprint,
        role="recipient",
        proof=opened,
        reached=[],
        stores=None,
        version="0.1.0",
        now=inproc.clock.now(),
    )
    with pytest.raises(PolicyError):
        inproc.client(r0).drill_answer(cid, other)


def test_an_editor_drill_request_is_never_a_real_release_request(inproc, case):
    cid = case.policy.case_id
    ed = case.editors[0]
    inproc.client(case.reporter).drill_start(cid, "d1")
    before = real_state(inproc)
    ch = _offer(inproc, ed, cid)["challenges"][0]
    req = make_drill_request(
        ed.sign_key, cid, "d1", inproc.card.fingerprint, ch["challenge"], inproc.clock.now()
    )
    path = f"/v1/cases/{cid}/release-request"
    # the drill-only request presented as a request signature: refused (its label differs)
    from vault.encoding import b64e, canonical_json

    header = "Velador " + b64e(canonical_json(req))
    r = httpx.post(inproc.url + path, content=b"{}", headers={"Authorization": header})
    assert r.status_code == 401
    # the same document relabelled as a request does not verify either
    forged = dict(req, kind="request")
    header = "Velador " + b64e(canonical_json(forged))
    r = httpx.post(inproc.url + path, content=b"{}", headers={"Authorization": header})
    assert r.status_code == 401
    # a captured drill answer request replayed at the release-request path: refused
    answer = make_drill_answer(
        ed.sign_key,
        case_id=cid,
        drill="d1",
        node=inproc.card.fingerprint,
        role="editor",
        proof=req,
        reached=[inproc.card.fingerprint],
        stores=None,
        version="0.1.0",
        now=inproc.clock.now(),
    )
    body = canonical_json(answer)
    auth = sign_request(
        ed.sign_key,
        inproc.card.sign_pk,
        "POST",
        f"/v1/cases/{cid}/drill/answer",
        body,
        inproc.clock.now(),
        cid,
        "",
    )
    r = httpx.post(inproc.url + path, content=body, headers={"Authorization": auth})
    assert r.status_code == 401
    r = httpx.post(
        inproc.url + f"/v1/cases/{cid}/drill/answer", content=body, headers={"Authorization": auth}
    )
    assert r.status_code == 200 and r.json()["body"]["proofs"]["key"] is True
    # the quorum is 1: had anything counted, the case would be EDITOR_PENDING
    assert real_state(inproc) == before
    assert inproc.client(ed).status(cid)["editor_requests"] == 0


def test_the_report_and_the_verdict(inproc, case, tmp_path):
    cid = case.policy.case_id
    inproc.client(case.reporter).drill_start(cid, "d1")
    # The recipients check a store with a snapshot that does not match its id
    bad = tmp_path / "bad-store"
    (bad / cid / "snapshots").mkdir(parents=True)
    (bad / cid / "snapshots" / ("0" * 64)).write_bytes(b"age-encryption.org/v1\nforged")
    for who in case.recipients:
        vdrill.answer(who, cid, [inproc.card], [f"file://{bad}"], inproc.clock, 10)
    reports = vdrill.collect(case.reporter, case.policy, inproc.clock, 10)
    assert reports[0].ok, reports[0].error
    body = reports[0].body
    assert {p["role"] for p in body["parties"]} == {"recipient", "editor", "reporter"}
    v = vdrill.verdict(case.policy, reports)
    # the store is damaged and the editors did not answer: named
    texts = " | ".join(p.english for p in v.problems)
    assert "could not read and check the case's stores" in texts
    assert "editor" in texts and "did not answer" in texts
    # a recipient cannot read the report
    with pytest.raises(PolicyError):
        inproc.client(case.recipients[0]).drill_report(cid)


def test_a_scheduled_drill_starts_once_per_interval(tmp_path, world_for):
    node = InprocNode(tmp_path / "n")
    try:
        from dataclasses import replace

        from vault.policy import sign_policy

        w = world_for(node.card)
        pol = sign_policy(
            replace(w.policy, switch=replace(w.policy.switch, drill_every=86400)),
            w.reporter.sign_key,
        )
        from vault.envelope import make_envelopes

        envs = []
        for h, m in zip(pol.holders, w.mnemonics, strict=True):
            envs += make_envelopes(pol, h, m, w.reporter.sign_key)
        node.client(w.reporter).register_case(pol, envs)
        assert drills.start_scheduled(node.svc) == 0
        node.clock.set(pol.created + 86400)
        assert drills.start_scheduled(node.svc) == 1
        assert drills.start_scheduled(node.svc) == 0
        assert [r[0] for r in node.query("SELECT drill_id FROM drills")] == ["s1"]
    finally:
        node.stop()


def test_the_clock_alarm_notice_says_whether_the_release_is_held(tmp_path, world_for):
    # Regression (issue 13, D4): the notice said "refused a release" even when the release went
    # ahead (due by the peers' time too, or held as long as a wrong clock could need).
    from escrow_node import clockcheck
    from escrow_node.clockcheck import ClockVerdict
    from escrow_node.service import state_of

    node = InprocNode(tmp_path / "n", operator_webhook="https://ops.example.org/hook")
    try:
        w = world_for(node.card)
        cid = w.policy.case_id
        node.client(w.reporter).register_case(w.policy, w.envs_for(node.card))
        svc = node.svc
        verdict = ClockVerdict(asked=2, answered=2, behind=2, lead=3 * 86400)

        def texts():
            rows = node.query("SELECT payload FROM outbox WHERE target LIKE 'https://ops%'")
            return [json.loads(r[0])["notice"]["body"]["text"] for r in rows]

        def alarm(held: bool) -> None:
            with svc.store.tx() as conn:
                row = svc.load(conn, cid)
                policy = svc.policy_of(row)
                clockcheck.raise_alarm(svc, conn, policy, state_of(row), verdict, 0, held)

        alarm(True)
        assert texts() == [texts()[0]] and "holds a release" in texts()[0]
        alarm(True)  # still held: told once
        assert len(texts()) == 1
        alarm(False)  # the hold bound passed: the release goes ahead, and the operator is told
        assert len(texts()) == 2 and "went ahead" in texts()[1]
        clockcheck.clear_alarm(svc, cid)
        alarm(False)  # a first alarm whose release goes ahead says so from the start
        assert len(texts()) == 3 and "went ahead" in texts()[2]
        assert not any("refused" in t for t in texts())
    finally:
        node.stop()


def test_every_operator_copy_goes_through_one_path(monkeypatch, inproc, case):
    # D4: emit() no longer carries its own copy of emit_operator()'s block.
    from escrow_node import notices

    calls = []
    real = notices.emit_operator
    monkeypatch.setattr(
        notices, "emit_operator", lambda *a, **k: calls.append(a[6]) or real(*a, **k)
    )
    inproc.client(case.reporter).release_now(case.policy.case_id)
    assert "released" in calls


def test_a_drill_started_under_duress_raises_the_silent_alarm(inproc, case):
    from vault.encoding import canonical_json
    from vault.nodeproto.messages import make_marker

    cid = case.policy.case_id
    path = f"/v1/cases/{cid}/drill"
    body = canonical_json({"drill": "d1", "marker": make_marker(inproc.card.box_pk, True)})
    auth = sign_request(
        case.reporter.sign_key, inproc.card.sign_pk, "POST", path, body, inproc.clock.now(), cid, ""
    )
    r = httpx.post(inproc.url + path, content=body, headers={"Authorization": auth})
    # The captor sees an ordinary drill; the editors got the silent alarm
    assert r.status_code == 200 and r.json()["body"]["state"] == "ARMED"
    assert inproc.query("SELECT 1 FROM drills WHERE drill_id = 'd1'")
    assert inproc.query("SELECT duress_at FROM cases")[0][0] is not None
    duress = [n for n in inproc.client(case.editors[0]).inbox() if n["notice"]["event"] == "duress"]
    assert duress
    mine = [n["notice"]["event"] for n in inproc.client(case.reporter).inbox()]
    assert "duress" not in mine
