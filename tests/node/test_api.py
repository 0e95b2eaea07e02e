"""API behaviour against an in-thread node (real HTTP on loopback, engine driven by hand)."""

from __future__ import annotations

import secrets

import pytest

from vault.encoding import b64d
from vault.errors import AuthenticationError, FormatError, NotFoundError, PolicyError
from vault.nodeproto.messages import SEALED_MARKER_BYTES, custody_digest, make_heartbeat
from vault.signing import verify_document


@pytest.fixture
def case(inproc, world_for):
    w = world_for(inproc.card, destroy_delay=0)
    r = inproc.client(w.reporter).register_case(w.policy, w.envs_for(inproc.card))
    assert r["state"] == "ARMED" and r["action"] == "register"
    return w


def hb(w, seq, now, duress=False):
    return make_heartbeat(w.policy, w.reporter.sign_key, seq, now, duress)


def test_register_is_idempotent_and_refuses_conflicts(inproc, case, world_for):
    c = inproc.client(case.reporter)
    again = c.register_case(case.policy, case.envs_for(inproc.card))
    assert again["state"] == "ARMED"
    assert len(inproc.query("SELECT * FROM audit WHERE event='register'")) == 1
    # Same policy, different envelopes: refused, nothing changed.
    from vault.envelope import make_envelopes

    holder = case.policy.holders_of(inproc.card.sign_pk)[0]
    fresh = make_envelopes(case.policy, holder, case.mnemonics[0], case.reporter.sign_key)
    before = inproc.snapshot()
    with pytest.raises(PolicyError, match="different envelopes"):
        c.register_case(case.policy, fresh)
    assert inproc.snapshot() == before
    # Another reporter's policy that reuses the case id: refused.
    other = world_for(inproc.card)
    body = dict(other.policy.body(), case_id=case.policy.case_id)
    from vault.signing import sign_document

    forged = sign_document("policy", body, other.reporter.sign_key)
    from vault.policy import parse_policy

    forged_policy = parse_policy(forged)
    envs = make_envelopes(forged_policy, holder, other.mnemonics[0], other.reporter.sign_key)
    with pytest.raises(PolicyError, match="different policy"):
        inproc.client(other.reporter).register_case(forged_policy, envs)
    assert inproc.snapshot() == before


def test_register_checks_envelopes_and_signer(inproc, world_for):
    w = world_for(inproc.card)
    envs = w.envs_for(inproc.card)
    with pytest.raises(FormatError, match="expected 2 envelopes"):
        inproc.client(w.reporter).register_case(w.policy, envs[:1])
    tampered = [dict(envs[0], sig=envs[1]["sig"]), envs[1]]
    with pytest.raises(FormatError):
        inproc.client(w.reporter).register_case(w.policy, tampered)
    with pytest.raises(PolicyError, match="reporter"):
        inproc.client(w.editors[0]).register_case(w.policy, envs)
    assert inproc.query("SELECT count(*) FROM cases")[0][0] == 0


def test_policy_rotation_keeps_state_and_sequence(inproc, case, world_for):
    c = inproc.client(case.reporter)
    c.heartbeat(hb(case, 1, inproc.clock.now()))
    people = {"reporter": case.reporter, "outsider": case.outsider}
    people.update({f"editor{i}": e for i, e in enumerate(case.editors)})
    people.update({f"outlet{i}": r for i, r in enumerate(case.recipients)})
    new = world_for(inproc.card, people=people, replaces=case.policy, every=7200)
    r = c.register_case(new.policy, new.envs_for(inproc.card))
    assert r["policy_hash"] == new.policy.hash and r["seq"] == 1
    assert r["deadline"] == inproc.clock.now() + 7200
    # A heartbeat naming the previous version is still the reporter's proof of life (a node
    # that missed the rotation, or the reporter's laptop that did, issue 11 finding 2) ...
    assert c.heartbeat(hb(case, 2, inproc.clock.now()))["seq"] == 2
    c.heartbeat(hb(new, 3, inproc.clock.now()))
    # ... but never a replay (the sequence must still grow, whatever version it names) ...
    with pytest.raises(PolicyError) as stale:
        c.heartbeat(hb(case, 3, inproc.clock.now()))
    assert stale.value.code == "stale_heartbeat"
    # ... nor one signed by anybody but the reporter, whatever version it names.
    from vault.signing import sign_document

    forged = sign_document(
        "heartbeat", hb(case, 9, inproc.clock.now())["body"], case.outsider.sign_key
    )
    with pytest.raises(FormatError):
        c.heartbeat(forged)
    assert inproc.query("SELECT seq FROM cases")[0][0] == 3


def test_heartbeat_receipt_and_status_are_signed_by_the_node(inproc, case):
    c = inproc.client(case.reporter)
    inproc.clock.advance(100)
    r = c.heartbeat(hb(case, 1, inproc.clock.now()))
    assert r["seq"] == 1 and r["state"] == "ARMED" and r["node"] == inproc.card.fingerprint
    assert r["deadline"] == inproc.clock.now() + 3600 and r["release_at"] == r["deadline"] + 600
    s = c.status(case.policy.case_id)
    assert s["seq"] == 1 and s["envelopes"] == 2 and s["editor_quorum"] == 2
    # Recipients and editors may read the status; outsiders may not, and are told what an
    # unknown case id gets (protocol §2.4).
    inproc.client(case.recipients[0]).status(case.policy.case_id)
    inproc.client(case.editors[1]).status(case.policy.case_id)
    with pytest.raises(NotFoundError):
        inproc.client(case.outsider).status(case.policy.case_id)


def test_duress_receipt_is_indistinguishable(inproc, world_for):
    for action in ("alert", "release"):
        w = world_for(inproc.card, duress=action)
        c = inproc.client(w.reporter)
        c.register_case(w.policy, w.envs_for(inproc.card))
        normal = c.heartbeat(hb(w, 1, inproc.clock.now()))
        duress = c.heartbeat(hb(w, 2, inproc.clock.now(), duress=True))
        assert set(normal) == set(duress)
        for key in ("state", "deadline", "release_at", "paused_until", "action", "node"):
            assert normal[key] == duress[key], key
        state = inproc.query(
            "SELECT state, duress_at FROM cases WHERE case_id=?", w.policy.case_id
        )[0]
        assert state["duress_at"] is not None
        assert state["state"] == ("ARMED" if action == "alert" else "RELEASED")
        editor_notices = inproc.client(w.editors[0]).inbox()
        events = [
            n["notice"]["event"]
            for n in editor_notices
            if n["notice"]["case_id"] == w.policy.case_id
        ]
        assert ("duress" in events) == (action == "alert")
        assert not [
            n
            for n in c.inbox()
            if n["notice"]["case_id"] == w.policy.case_id and n["notice"]["event"] == "duress"
        ]


def test_duress_marker_sizes(case):
    a = hb(case, 1, 0)
    b = hb(case, 1, 0, duress=True)
    for doc in (a, b):
        for v in doc["body"]["markers"].values():
            assert len(b64d(v, "marker")) == SEALED_MARKER_BYTES
    assert len(str(a)) == len(str(b))


def test_pause_resume_destroy(inproc, case):
    c = inproc.client(case.reporter)
    cid = case.policy.case_id
    r = c.pause(cid, inproc.clock.now() + 86400)
    assert r["state"] == "PAUSED" and r["paused_until"] == inproc.clock.now() + 86400
    inproc.clock.advance(10_000)
    inproc.sweep()
    assert c.status(cid)["state"] == "PAUSED"
    assert c.resume(cid)["state"] == "ARMED"
    with pytest.raises(PolicyError, match="not PAUSED"):
        c.resume(cid)
    with pytest.raises(PolicyError):
        inproc.client(case.editors[0]).destroy(cid)
    assert c.destroy(cid)["state"] == "DESTROYED"
    assert inproc.query("SELECT count(*) FROM envelopes")[0][0] == 0
    proof = c.custody(cid, secrets.token_bytes(32))
    assert proof["envelopes"] == 0


def test_release_now_and_fetch(inproc, case):
    cid = case.policy.case_id
    rec = inproc.client(case.recipients[0])
    with pytest.raises(PolicyError, match="not released"):
        rec.fetch_release(cid)
    assert inproc.client(case.reporter).release_now(cid)["state"] == "RELEASED"
    rel = rec.fetch_release(cid)
    assert rel.policy.hash == case.policy.hash
    assert len(rel.envelopes) == 1
    assert rel.envelopes[0]["body"]["recipient"] == case.recipients[0].fingerprint
    from vault.envelope import open_envelope

    share = open_envelope(rel.envelopes[0], rel.policy, case.recipients[0].box_key)
    assert share.mnemonic == case.mnemonics[0]
    for who in (case.editors[0], case.reporter):
        with pytest.raises(PolicyError):
            inproc.client(who).fetch_release(cid)
    with pytest.raises(NotFoundError):
        inproc.client(case.outsider).fetch_release(cid)


def test_editor_quorum_objection_and_release(inproc, case):
    cid = case.policy.case_id
    e0, e1 = (inproc.client(e) for e in case.editors)
    assert e0.release_request(cid, "not heard from her")["state"] == "ARMED"
    assert e0.release_request(cid)["state"] == "ARMED"  # one editor counts once
    with pytest.raises(NotFoundError):
        inproc.client(case.outsider).release_request(cid)
    r = e1.release_request(cid)
    assert r["state"] == "EDITOR_PENDING" and r["release_at"] == inproc.clock.now() + 300
    reporter = inproc.client(case.reporter)
    events = [n["notice"]["event"] for n in reporter.inbox()]
    assert "editor_pending" in events
    assert reporter.object(cid)["state"] == "ARMED"
    e0.release_request(cid)
    e1.release_request(cid)
    inproc.clock.advance(299)
    inproc.sweep()
    assert reporter.status(cid)["state"] == "EDITOR_PENDING"
    inproc.clock.advance(1)
    inproc.sweep()
    assert reporter.status(cid)["state"] == "RELEASED"
    with pytest.raises(PolicyError):
        reporter.object(cid)


def test_custody_proof_matches_the_reporters_computation(inproc, case):
    nonce = secrets.token_bytes(32)
    proof = inproc.client(case.reporter).custody(case.policy.case_id, nonce)
    assert proof["digest"] == custody_digest(nonce, case.envs_for(inproc.card))
    assert proof["envelopes"] == 2


def test_subscribe_and_inbox(inproc, case):
    cid = case.policy.case_id
    rec = inproc.client(case.recipients[0])
    out = rec.subscribe(cid, "email", "desk@outlet.example")
    assert out["role"] == "recipient" and out["subscriptions"] == [
        {"channel": "email", "target": "desk@outlet.example"}
    ]
    rec.subscribe(cid, "webhook", "https://outlet.example/hook")
    with pytest.raises(FormatError):
        rec.subscribe(cid, "email", "not an address")
    with pytest.raises(FormatError):
        rec.subscribe(cid, "sms", "+52 55 0000")
    with pytest.raises(NotFoundError):
        inproc.client(case.outsider).subscribe(cid, "email", "x@y.example")
    inproc.client(case.reporter).release_now(cid)
    rows = inproc.query("SELECT channel, target FROM outbox ORDER BY id")
    assert {(r[0], r[1]) for r in rows} >= {
        ("email", "desk@outlet.example"),
        ("webhook", "https://outlet.example/hook"),
    }
    notices = rec.inbox()
    assert [n["notice"]["event"] for n in notices] == ["released"]
    assert rec.inbox(after=notices[-1]["id"]) == []
    rec.unsubscribe(cid, "email", "desk@outlet.example")
    assert len(inproc.query("SELECT * FROM subscriptions")) == 1


def test_client_errors_are_vault_errors(inproc, case, tmp_path):
    from tests.conftest import free_port
    from vault.errors import NodeError
    from vault.nodeproto.client import NodeClient

    with (
        NodeClient(
            inproc.card, case.reporter, inproc.clock, 2.0, url=f"http://127.0.0.1:{free_port()}"
        ) as c,
        pytest.raises(NodeError, match="unreachable"),
    ):
        c.status(case.policy.case_id)
    with pytest.raises(NotFoundError):
        inproc.client(case.reporter).status("case-unknown-0000")
    # A client pinned to another node's key refuses the answers (and the node refuses it).
    other = NodeClient(case.reporter.card, case.reporter, inproc.clock, 2.0, url=inproc.url)
    with other, pytest.raises(AuthenticationError):
        other.status(case.policy.case_id)
    # Fetching the card by URL (trust on first use).
    with NodeClient(inproc.url, case.reporter, inproc.clock) as tofu:
        assert tofu.card.fingerprint == inproc.card.fingerprint
        assert tofu.health()["status"] == "ok"


def test_openapi_and_metrics(inproc, case):
    import httpx

    spec = httpx.get(inproc.url + "/v1/openapi.json").json()
    assert "/v1/cases/{case_id}/heartbeat" in spec["paths"]
    # Finding 3 (d): metrics are off by default and never on the API port.
    assert httpx.get(inproc.url + "/metrics").status_code == 404
    assert 'velador_node_cases{state="ARMED"} 1.0' in inproc.svc.metrics.render()
    card = httpx.get(inproc.url + "/v1/card").json()["card"]
    assert card == inproc.card.text
    assert verify_document


def test_a_node_that_missed_two_rotations_follows_the_chain(inproc, case, world_for):
    """Issue 11 finding 2 / 5: registration brings a node two versions behind up to date when
    every link is the reporter's; the release then serves the chain back to the first policy."""
    from types import SimpleNamespace

    from vault.signing import sign_document

    people = {"reporter": case.reporter, "outsider": case.outsider}
    people.update({f"editor{i}": e for i, e in enumerate(case.editors)})
    people.update({f"outlet{i}": r for i, r in enumerate(case.recipients)})
    p1 = world_for(inproc.card, people=people, replaces=case.policy)
    p2 = world_for(inproc.card, people=people, replaces=p1.policy)
    c = inproc.client(case.reporter)
    envs = p2.envs_for(inproc.card)
    before = inproc.snapshot()
    # Without the missing link: refused.
    with pytest.raises(PolicyError, match="different policy"):
        c.register_case(p2.policy, envs)
    # With a forged link (the right body, signed by somebody else): refused, nothing changed.
    forged = sign_document("policy", p1.policy.body(), case.outsider.sign_key)
    with pytest.raises((FormatError, AuthenticationError)):
        c.register_case(p2.policy, envs, [SimpleNamespace(doc=forged)])
    assert inproc.snapshot()["cases"] == before["cases"]
    # With the reporter's link: the node now holds the newest version.
    r = c.register_case(p2.policy, envs, [p1.policy])
    assert r["policy_hash"] == p2.policy.hash
    c.release_now(case.policy.case_id)
    rel = inproc.client(case.recipients[0]).fetch_release(case.policy.case_id)
    assert rel.policy.hash == p2.policy.hash
    assert [p.hash for p in rel.chain] == [p1.policy.hash, case.policy.hash]
