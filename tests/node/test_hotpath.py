"""The heartbeat hot path (docs/decisions.md, "The heartbeat hot path"): the plain-ASGI
heartbeat route answers exactly as the FastAPI route does, the per-hash policy cache never
serves a policy the row no longer names, and the faster canonical-JSON float check and
CaseState.replace keep their checks."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from escrow_node import engine
from escrow_node.api.fastpath import NodeApp
from escrow_node.app import create_app
from escrow_node.config import NodeConfig, RegistrationConfig
from escrow_node.service import CachedPolicy
from tests.node.builders import T0, make_world, person
from vault.clock import FakeClock
from vault.encoding import canonical_json
from vault.nodeproto.auth import sign_request
from vault.nodeproto.messages import make_heartbeat


class ViaFastAPI:
    """The same application entered through FastAPI's own __call__ (the route, not the fast
    path)."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(self.app, scope, receive, send)


class AsgiClient:
    """Requests straight into an ASGI app (no server), one event loop per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)


@pytest.fixture
def node(tmp_path):
    ident = person(tmp_path / "node", "node", "node", "http://127.0.0.1:9")
    clock = FakeClock(T0)
    config = NodeConfig(
        data_dir=tmp_path / "node",
        name="node",
        url="http://127.0.0.1:9",
        registration=RegistrationConfig(mode="open"),
    )
    app = create_app(config, ident, clock, engine=False)
    assert isinstance(app, NodeApp)
    yield app, ident, clock
    app.state.service.close()
    app.state.service.store.close()


@pytest.fixture
def registered(node, tmp_path):
    app, ident, clock = node
    w = make_world(tmp_path / "people", [ident.card])
    body = canonical_json({"policy": w.policy.doc, "envelopes": w.envs_for(ident.card)})
    client = AsgiClient(app)
    r = client.post(
        "/v1/cases", content=body, headers=_headers(w.reporter, ident, "/v1/cases", body, clock)
    )
    assert r.status_code == 200, r.text
    return w


def _headers(who, ident, path, body, clock, case_id=None, query=""):
    hdr = sign_request(
        who.sign_key, ident.card.sign_pk, "POST", path, body, clock.now(), case_id, query
    )
    return {"authorization": hdr, "content-type": "application/json"}


def _beat(w, seq, clock, key=None):
    return canonical_json(make_heartbeat(w.policy, key or w.reporter.sign_key, seq, clock.now()))


def test_both_routes_answer_alike(node, registered):
    """Every outcome of a heartbeat, sent once through each route: same status, same headers,
    same body (receipts differ only in their signed fields, compared by key and size)."""
    app, ident, clock = node
    w = registered
    cid = w.policy.case_id
    path = f"/v1/cases/{cid}/heartbeat"
    fast, slow = AsgiClient(app), AsgiClient(ViaFastAPI(app))
    seq = iter(range(1, 1000))

    def cases():
        # (description, path, body, headers) - made fresh per route: nonces are one-shot.
        s = next(seq)
        yield "accepted", path, _beat(w, s, clock), None
        yield "stale", path, _beat(w, s, clock), None
        body = _beat(w, 900, clock)
        yield "unsigned", path, body, {"content-type": "application/json"}
        yield "garbage signature", path, body, {"authorization": "Velador !!!"}
        yield "forged heartbeat", path, _beat(w, 901, clock, w.editors[0].sign_key), None
        yield "not json", path, b"{not json", None
        yield "unknown case", "/v1/cases/case-0000000000/heartbeat", body, None
        yield "too large", path, b"{" + b" " * (70 * 1024) + b"}", None

    def send(client, p, body, headers, who=w.reporter):
        headers = headers or _headers(who, ident, p, body, clock, cid)
        return client.post(p, content=body, headers=headers)

    answers = {}
    for name, client in (("fast", fast), ("slow", slow)):
        answers[name] = [(d, send(client, p, b, h)) for d, p, b, h in cases()]
        # An editor relaying a heartbeat (neither the reporter nor a peer node): forbidden.
        body = _beat(w, 950, clock)
        answers[name].append(("forbidden", send(client, path, body, None, w.editors[0])))
    for (desc, a), (_, b) in zip(answers["fast"], answers["slow"], strict=True):
        assert a.status_code == b.status_code, desc
        assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
        assert int(a.headers["content-length"]) == len(a.content), desc
        if a.status_code == 200:
            ra, rb = a.json(), b.json()
            assert ra.keys() == rb.keys() and ra["body"].keys() == rb["body"].keys()
            assert ra["body"]["state"] == rb["body"]["state"] == "ARMED"
        else:
            # Equal but for the sequence numbers (each route got its own heartbeats).
            assert re.sub(rb"\d+", b"N", a.content) == re.sub(rb"\d+", b"N", b.content), desc
    assert [a.status_code for _, a in answers["fast"]] == [
        200, 409, 401, 401, 400, 400, 404, 413, 403
    ]  # fmt: skip


def test_the_fast_path_is_taken_and_only_for_exact_heartbeat_posts(node, registered, monkeypatch):
    app, ident, clock = node
    w = registered
    cid = w.policy.case_id
    path = f"/v1/cases/{cid}/heartbeat"
    entered: list[str] = []
    real = FastAPI.__call__

    async def spy(self, scope, receive, send):
        entered.append(scope["path"])
        await real(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", spy)
    client = AsgiClient(app)
    body = _beat(w, 1, clock)
    assert (
        client.post(
            path, content=body, headers=_headers(w.reporter, ident, path, body, clock, cid)
        ).status_code
        == 200
    )
    assert entered == []
    # With a query string (signed), through FastAPI; the answer is the same kind.
    body = _beat(w, 2, clock)
    headers = _headers(w.reporter, ident, path, body, clock, cid, "x=1")
    assert client.post(path + "?x=1", content=body, headers=headers).status_code == 200
    # A case id outside the route's pattern, and other methods, are FastAPI's too.
    assert client.post("/v1/cases/short/heartbeat", content=b"{}").status_code == 400
    assert client.get("/v1/health").status_code == 200
    assert entered == [path, "/v1/cases/short/heartbeat", "/v1/health"]
    assert client.get("/metrics").status_code == 404  # never on the API port
    metrics = app.state.service.metrics.render()
    assert "velador_node_heartbeats_total 2.0" in metrics


def test_policy_cache_follows_rotation_pause_and_resume(node, registered, tmp_path):
    app, ident, clock = node
    svc = app.state.service
    w = registered
    cid = w.policy.case_id
    client = AsgiClient(app)

    def post(p, body, who=w.reporter):
        return client.post(p, content=body, headers=_headers(who, ident, p, body, clock, cid))

    def current() -> CachedPolicy:
        with svc.store.snapshot() as conn:
            return svc.current_policy(conn, cid)

    hb_path = f"/v1/cases/{cid}/heartbeat"
    assert post(hb_path, _beat(w, 1, clock)).status_code == 200
    first = current()
    assert first.hash == w.policy.hash and current() is first  # cached, not re-parsed
    # Pause and resume change the state, not the policy: same cached object, heartbeats pass.
    assert (
        post(
            f"/v1/cases/{cid}/pause", json.dumps({"until": clock.now() + 600}).encode()
        ).status_code
        == 200
    )
    assert current() is first
    assert post(f"/v1/cases/{cid}/resume", b"").status_code == 200
    assert current() is first
    assert post(hb_path, _beat(w, 2, clock)).status_code == 200
    # Rotation: the row names a new policy; the old one is still in the cache but never served.
    people = {"reporter": w.reporter, "outsider": w.outsider}
    people.update({f"editor{i}": e for i, e in enumerate(w.editors)})
    people.update({f"outlet{i}": r for i, r in enumerate(w.recipients)})
    new = make_world(
        tmp_path / "people", [ident.card], people=people, replaces=w.policy, every=7200
    )
    body = canonical_json({"policy": new.policy.doc, "envelopes": new.envs_for(ident.card)})
    r = client.post(
        "/v1/cases", content=body, headers=_headers(w.reporter, ident, "/v1/cases", body, clock)
    )
    assert r.status_code == 200, r.text
    assert svc._cached_policy(w.policy.hash) is first
    assert current().hash == new.policy.hash
    assert current().rules.every == 7200
    # A heartbeat naming the previous version still counts (issue 11 finding 2).
    assert post(hb_path, _beat(w, 3, clock)).status_code == 200
    assert post(hb_path, _beat(new, 4, clock)).status_code == 200
    # A row whose stored hash does not match its policy text is never cached under that hash.
    with svc.store.tx() as conn:
        conn.execute("UPDATE cases SET policy_hash = ? WHERE case_id = ?", ("0" * 64, cid))
    assert current().hash == new.policy.hash and svc._cached_policy("0" * 64) is None
    refused = post(hb_path, _beat(new, 5, clock))
    assert refused.status_code == 409


def test_canonical_json_still_refuses_every_float():
    class Sub(float):
        pass

    for bad in (1.5, [1, [2, {"a": 0.0}]], {"t": (1, 2.0)}, {"n": float("nan")}, [Sub(1)]):
        with pytest.raises(TypeError, match="floats"):
            canonical_json(bad)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError):
        canonical_json(loop)
    assert canonical_json({"b": [1, True, None, "x"], "a": (2,)}) == (
        b'{"a":[2],"b":[1,true,null,"x"]}'
    )


def test_case_state_replace_checks_field_names():
    cs = engine.CaseState("ARMED", seq=3)
    assert engine.replace(cs, seq=4) == engine.CaseState("ARMED", seq=4)
    assert cs.seq == 3
    with pytest.raises(TypeError):
        engine.replace(cs, sequence=4)


def test_load_state_reads_what_a_transition_needs(node, registered):
    app, _, _ = node
    svc = app.state.service
    with svc.store.read() as conn:
        full = svc.load(conn, registered.policy.case_id)
        slim = svc.load_state(conn, registered.policy.case_id)
    assert isinstance(slim, sqlite3.Row)
    names = slim.keys()
    assert {k: slim[k] for k in names} == {k: full[k] for k in names}
    assert "policy" not in names and "last_heartbeat" not in names
