"""A hostile escrow node: every answer the client reads (docs/protocol.md §4) is fuzzed.

The node is an `httpx.MockTransport` handler, so no socket is opened. Answers are arbitrary JSON,
arbitrary bytes, or valid signed answers (receipts, status, custody, notices, releases) mutated
and re-signed with the node's key, so that the client's checks behind the signature are reached.
Property: each `NodeClient` call returns a value or raises a VeladorError, never anything else.
"""

from __future__ import annotations

import types

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.mutations import json_values, mutated
from tests.fuzz.profiles import fuzz_settings
from tests.fuzz.world import T0, resign, world
from vault.clock import FakeClock
from vault.encoding import b64e, canonical_json
from vault.errors import VeladorError
from vault.nodeproto.client import NodeClient
from vault.nodeproto.messages import make_heartbeat
from vault.signing import sign_document

W = world()
NODE = W.nodes[0]
CID = W.policy.case_id
NONCE = bytes(16)
STATUS = [200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 409, 413, 422, 429, 500, 503]


def _signed(kind: str, **extra):
    body = {"v": 1, "node": NODE.card.fingerprint, "case_id": CID, "time": T0, **extra}
    return sign_document(kind, body, NODE.sign)


def _valid_answers():
    hb = make_heartbeat(W.policy, W.reporter.sign, 7, T0)
    return {
        "heartbeat": (lambda c: c.heartbeat(hb), _signed("receipt", seq=7, state="ARMED")),
        "status": (lambda c: c.status(CID), _signed("status", state="ARMED", seq=7)),
        "pause": (lambda c: c.pause(CID, T0 + 60), _signed("receipt", state="PAUSED")),
        "custody": (
            lambda c: c.custody(CID, NONCE),
            _signed("custody", nonce=b64e(NONCE), digest="00" * 32),
        ),
        "release": (
            lambda c: c.fetch_release(CID),
            {
                "case_id": CID,
                "node": NODE.card.fingerprint,
                "released_at": T0,
                "policy": W.policy.doc,
                "envelopes": W.envelopes["n1"],
            },
        ),
        "inbox": (
            lambda c: c.inbox(),
            {"notices": [{"id": 1, "notice": _signed("notice", event="released")}]},
        ),
        "latest": (lambda c: c.latest_heartbeat(CID), {"heartbeat": hb}),
        "register": (
            lambda c: c.register_case(W.policy, W.envelopes["n1"]),
            _signed("receipt", state="ARMED"),
        ),
        "card": (lambda c: NodeClient(NODE.card.url, None, FakeClock(T0), http=c._http).card, None),
    }


ANSWERS = _valid_answers()


def _resign_all(value):
    """Re-sign every signed document inside `value` with the node's key (mutations may have
    changed their bodies), so that verification passes and the client's own checks run."""
    if isinstance(value, dict):
        if set(value) == {"kind", "body", "signer", "sig"} and value.get("kind") in (
            "receipt",
            "status",
            "custody",
            "notice",
        ):
            return resign(value["kind"], value["body"], NODE.sign, value)
        return {k: _resign_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resign_all(v) for v in value]
    return value


def _client(status: int, content: bytes) -> NodeClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/card" and status == 200 and content == b"CARD":
            return httpx.Response(200, content=canonical_json({"card": NODE.card.text}))
        return httpx.Response(status, content=content)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    ident = types.SimpleNamespace(sign_key=W.reporter.sign)
    return NodeClient(NODE.card, ident, FakeClock(T0), http=http)  # type: ignore[arg-type]


def _call(name: str, status: int, content: bytes):
    call, _ = ANSWERS[name]
    client = _client(status, content)
    try:
        return call(client)
    except VeladorError:
        return None
    finally:
        client._http.close()


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_valid_answers_are_accepted(name):
    _, answer = ANSWERS[name]
    content = b"CARD" if answer is None else canonical_json(answer)
    assert _call(name, 200, content) is not None


@fuzz_settings(60, 1.0)
@given(
    name=st.sampled_from(sorted(ANSWERS)),
    status=st.sampled_from(STATUS),
    content=st.one_of(
        st.binary(max_size=300), json_values.map(lambda v: canonical_json(v)), st.just(b"")
    ),
)
def test_arbitrary_answers(name, status, content):
    _call(name, status, content)


@fuzz_settings(80, 1.0)
@given(data=st.data(), name=st.sampled_from(sorted(k for k in ANSWERS if k != "card")))
def test_resigned_mutated_answers(data, name):
    _, answer = ANSWERS[name]
    body = _resign_all(data.draw(mutated(answer)))
    try:
        content = canonical_json(body)
    except (ValueError, TypeError, RecursionError):
        return
    got = _call(name, 200, content)
    if name == "release" and got is not None:
        assert got.policy.hash == W.policy.hash or got.policy.case_id == CID
    if name == "inbox" and got is not None:
        assert all(isinstance(n["notice"], dict) for n in got)


@pytest.mark.parametrize(
    "answer",
    [
        {"notices": [5]},
        {"notices": ["x"]},
        {"notices": 5},
        {"notices": [{"notice": _signed("notice", event="released")}]},
    ],
    ids=["int-item", "str-item", "int-list", "no-id"],
)
def test_inbox_hostile_notice_list_is_a_velador_error(answer):
    client = _client(200, canonical_json(answer))
    try:
        with pytest.raises(VeladorError):
            client.inbox()
    finally:
        client._http.close()
