"""The node's API under hostile, validly signed bodies (docs/protocol.md §2, §4).

An in-thread node (tests/node/conftest.py `InprocNode`) holds one armed case. Hypothesis draws
mutations of the real request bodies (the registration with its policy and envelopes, heartbeats,
pause, release requests, subscriptions), re-signs the inner documents with the reporter's key and
signs each HTTP request correctly (auth.sign_request over the mutated bytes), so that every
request gets past authentication and reaches the handlers' own checks.

Property: every answer is a 2xx or a 4xx with a JSON error body ({"error", "message"}), never a
5xx; and when the node refuses a request, its state tables (cases, envelopes, audit, outbox,
subscriptions, notices) are unchanged.

Under `make fuzz` (VELADOR_FUZZ=1) this file also runs the schemathesis pass of
tests/node/test_schemathesis.py with many more examples per operation.
"""

from __future__ import annotations

import copy

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.mutations import json_values, mutated
from tests.fuzz.profiles import FUZZ_EXAMPLES, FUZZING, fuzz_settings
from tests.fuzz.world import resign
from vault.encoding import canonical_json
from vault.nodeproto.auth import sign_request
from vault.nodeproto.messages import make_heartbeat


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from tests.node.builders import make_world
    from tests.node.conftest import InprocNode

    root = tmp_path_factory.mktemp("api-fuzz")
    n = InprocNode(root)
    n.svc.limiter.rate = 1e9  # fuzzing is not a flood; let every request reach the handlers
    n.svc.limiter.burst = 10**9
    w = make_world(root / "people", [n.card])
    c = n.client(w.reporter)
    c.register_case(w.policy, w.envs_for(n.card))
    c.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, n.clock.now()))
    n.world = w
    yield n
    n.stop()


def send(node, identity, method: str, path: str, body: bytes, case_id: str | None):
    header = sign_request(
        identity.sign_key, node.card.sign_pk, method, path, body, node.clock.now(), case_id
    )
    headers = {"authorization": header}
    if body:
        headers["content-type"] = "application/json"
    return httpx.request(method, node.url + path, content=body, headers=headers, timeout=30)


def check_answer(node, resp, before) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    if resp.status_code >= 400:
        data = resp.json()
        assert isinstance(data, dict) and isinstance(data.get("message"), str) and data["message"]
        assert isinstance(data.get("error"), str)
        assert node.snapshot() == before, f"refused request changed the node: {resp.text[:200]}"


def _encode(value) -> bytes | None:
    try:
        return canonical_json(value)
    except (ValueError, TypeError, RecursionError):
        return None


def _targets(w):
    cid = w.policy.case_id
    return {
        "register": (w.reporter, "POST", "/v1/cases", None),
        "heartbeat": (w.reporter, "POST", f"/v1/cases/{cid}/heartbeat", None),
        "pause": (w.reporter, "POST", f"/v1/cases/{cid}/pause", {"until": 0}),
        "release-request": (
            w.editors[0],
            "POST",
            f"/v1/cases/{cid}/release-request",
            {"reason": "x"},
        ),
        "subscribe": (
            w.recipients[0],
            "POST",
            f"/v1/cases/{cid}/subscribe",
            {"channel": "email", "target": "desk@example.org"},
        ),
        "unsubscribe": (
            w.recipients[0],
            "POST",
            f"/v1/cases/{cid}/unsubscribe",
            {"channel": "email", "target": "desk@example.org"},
        ),
    }


@fuzz_settings(60, 0.5)
@given(data=st.data(), target=st.sampled_from(["register", "heartbeat"]))
def test_signed_documents_mutated_and_resigned(node, data, target):
    w = node.world
    cid = w.policy.case_id
    if target == "register":
        doc = {"policy": copy.deepcopy(w.policy.doc), "envelopes": w.envs_for(node.card)}
        doc = data.draw(mutated(doc))
        pol = doc.get("policy") if isinstance(doc, dict) else None
        if isinstance(pol, dict) and "body" in pol:
            doc["policy"] = resign("policy", pol["body"], w.reporter.sign_key, pol)
        if isinstance(doc, dict) and isinstance(doc.get("envelopes"), list):
            doc["envelopes"] = [
                resign("envelope", e["body"], w.reporter.sign_key, e)
                if isinstance(e, dict) and "body" in e
                else e
                for e in doc["envelopes"]
            ]
        path, case_id = "/v1/cases", cid
    else:
        seq = node.query("SELECT seq FROM cases WHERE case_id = ?", cid)[0][0] + 1
        hb = make_heartbeat(w.policy, w.reporter.sign_key, seq, node.clock.now())
        doc = resign("heartbeat", data.draw(mutated(hb["body"])), w.reporter.sign_key, hb)
        path, case_id = f"/v1/cases/{cid}/heartbeat", cid
    body = _encode(doc)
    if body is None or len(body) > 60 * 1024:
        return
    before = node.snapshot()
    check_answer(node, send(node, w.reporter, "POST", path, body, case_id), before)


@fuzz_settings(60, 0.5)
@given(
    data=st.data(),
    target=st.sampled_from(["pause", "release-request", "subscribe", "unsubscribe"]),
)
def test_action_bodies(node, data, target):
    w = node.world
    who, method, path, valid = _targets(w)[target]
    value = data.draw(st.one_of(mutated(valid), json_values))
    body = _encode(value)
    if body is None:
        return
    before = node.snapshot()
    resp = send(node, who, method, path, body, w.policy.case_id)
    check_answer(node, resp, before)
    if target == "pause" and resp.status_code < 300:
        node.client(w.reporter).resume(w.policy.case_id)  # keep the case armed for the others


@fuzz_settings(20, 0.3)
@given(body=st.one_of(st.binary(max_size=400), json_values.map(lambda v: canonical_json(v))))
def test_raw_bodies_validly_signed(node, body):
    w = node.world
    cid = w.policy.case_id
    for path in ("/v1/cases", f"/v1/cases/{cid}/heartbeat", f"/v1/cases/{cid}/pause"):
        before = node.snapshot()
        check_answer(node, send(node, w.reporter, "POST", path, body, cid), before)


def test_deeply_nested_heartbeat_is_refused(node):
    # A body nested close to the JSON reader's limit must be a 400, whatever depth it has.
    w = node.world
    cid = w.policy.case_id
    path = f"/v1/cases/{cid}/heartbeat"
    for depth in range(900, 1000, 9):
        deep = "[" * depth + "]" * depth
        body = (
            f'{{"kind":"heartbeat","body":{{"v":1,"deep":{deep}}},'
            f'"signer":"{"A" * 43}","sig":"{"A" * 86}"}}'
        ).encode()
        before = node.snapshot()
        check_answer(node, send(node, w.reporter, "POST", path, body, cid), before)


def _request_doc(node, path: str, method: str = "GET", body: bytes = b""):
    from vault.encoding import b64e
    from vault.nodeproto.auth import body_hash

    return {
        "v": 1,
        "method": method,
        "path": path,
        "query": "",
        "body": body_hash(body),
        "time": node.clock.now(),
        "nonce": b64e(bytes(16)),
        "node": b64e(node.card.sign_pk),
        "case_id": node.world.policy.case_id,
    }


@fuzz_settings(40, 0.5)
@given(data=st.data())
def test_request_signatures_mutated_and_resigned(node, data):
    from vault.encoding import b64e

    w = node.world
    path = f"/v1/cases/{w.policy.case_id}"
    req = data.draw(mutated(_request_doc(node, path)))
    doc = resign("request", req, w.reporter.sign_key, {"kind": "request", "sig": "", "signer": ""})
    body = _encode(doc)
    if body is None:
        return
    before = node.snapshot()
    resp = httpx.get(node.url + path, headers={"authorization": "Velador " + b64e(body)})
    check_answer(node, resp, before)


def test_non_ascii_request_signature_is_a_401(node):
    from nacl.signing import SigningKey

    from vault.encoding import b64e
    from vault.signing import sign_document

    req = _request_doc(node, "/v1/inbox")
    req["body"] = "\u202e"
    req["case_id"] = None
    doc = sign_document("request", req, SigningKey(bytes(32)))
    before = node.snapshot()
    resp = httpx.get(
        node.url + "/v1/inbox", headers={"authorization": "Velador " + b64e(canonical_json(doc))}
    )
    check_answer(node, resp, before)
    assert resp.status_code == 401


@pytest.mark.skipif(not FUZZING, reason="the bounded run is tests/node/test_schemathesis.py")
def test_openapi_conformance_full(tmp_path):
    schemathesis = pytest.importorskip("schemathesis")
    from tests.node.conftest import InprocNode

    node = InprocNode(tmp_path)
    try:
        schema = schemathesis.openapi.from_url(node.url + "/v1/openapi.json")
        ops = [result.ok() for result in schema.get_all_operations()]
        assert len(ops) >= 15
        for op in ops:

            @given(op.as_strategy())
            @settings(
                max_examples=max(50, FUZZ_EXAMPLES // 4),
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case):
                case.call_and_validate()

            check()
    finally:
        node.stop()
