"""Heartbeat checks in worker processes (escrow_node/verifier.py, docs/decisions.md §12): a
worker answers every outcome exactly as the serving process does, holds no secret in its argv
or environment, and a worker that dies is replaced while its requests are checked in the
serving process instead."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from escrow_node.config import PASSPHRASE_ENV
from escrow_node.verifier import VerifierPool
from tests.node.conftest import wait_for

# The in-process node fixtures of the hot-path tests (the test functions name them).
from tests.node.test_hotpath import _beat, _headers, node, registered  # noqa: F401
from vault.encoding import b64e
from vault.nodeproto.messages import make_heartbeat


async def _ready(pool: VerifierPool, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(w.ready for w in pool.workers):
        assert time.monotonic() < deadline, "no verification worker became ready"
        await asyncio.sleep(0.05)


async def _outcomes(app, w, ident, clock, first_seq: int) -> list[tuple[str, int, bytes]]:
    """Every outcome of a heartbeat, through the app as it is (worker or not)."""
    cid = w.policy.case_id
    path = f"/v1/cases/{cid}/heartbeat"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:

        async def send(desc, p, body, headers=None, who=w.reporter):
            headers = headers or _headers(who, ident, p, body, clock, cid)
            r = await c.post(p, content=body, headers=headers)
            return desc, r.status_code, r.content

        body = _beat(w, first_seq + 900, clock)
        return [
            await send("accepted", path, _beat(w, first_seq, clock)),
            await send("stale", path, _beat(w, first_seq, clock)),
            await send("unsigned", path, body, {"content-type": "application/json"}),
            await send("garbage signature", path, body, {"authorization": "Velador !!!"}),
            await send("forged", path, _beat(w, first_seq + 901, clock, w.editors[0].sign_key)),
            await send("not json", path, b"{not json"),
            await send("unknown case", "/v1/cases/case-0000000000/heartbeat", body),
            await send("editor relays", path, _beat(w, first_seq + 902, clock), None, w.editors[0]),
        ]


def _fallbacks(app) -> float:
    return app.state.service.metrics.get("velador_node_verify_fallbacks_total")


def _with_pool(app, fn):
    """Run `fn(pool)` (a coroutine function) with a started pool on the app's service."""
    svc = app.state.service

    async def go():
        pool = VerifierPool(svc, 1)
        await pool.start()
        svc.verifiers = pool
        try:
            await _ready(pool)
            return await fn(pool)
        finally:
            svc.verifiers = None
            await pool.close()

    return asyncio.run(go())


def test_a_worker_answers_every_outcome_as_the_serving_process_does(node, registered):  # noqa: F811
    app, ident, clock = node
    w = registered
    inline = asyncio.run(_outcomes(app, w, ident, clock, 1))
    svc = app.state.service
    cid = w.policy.case_id

    async def through_worker(pool):
        return await _outcomes(app, w, ident, clock, 2)

    via_worker = _with_pool(app, through_worker)
    assert _fallbacks(app) == 0  # every request was checked by the worker
    for (desc, status_a, body_a), (_, status_b, body_b) in zip(inline, via_worker, strict=True):
        assert status_a == status_b, desc
        if status_a != 200:  # the same error body, but for sequence numbers
            assert re.sub(rb"\d+", b"N", body_a) == re.sub(rb"\d+", b"N", body_b), desc
    assert [s for _, s, _ in via_worker] == [200, 409, 401, 401, 400, 400, 404, 403]
    # The worker's accepted heartbeat was written by the serving process: seq 2 is the case's.
    with svc.store.read() as conn:
        assert conn.execute("SELECT seq FROM cases WHERE case_id = ?", (cid,)).fetchone()[0] == 2
        # The refused-but-authenticated requests burned their nonces, as inline ones do.
        burned = conn.execute("SELECT COUNT(*) FROM nonces").fetchone()[0]
    assert burned >= 2 * 5  # accepted + stale + forged + unknown case + editor, on each path


def test_the_worker_holds_no_secret_in_argv_or_environment(node, registered, monkeypatch):  # noqa: F811
    app, ident, _ = node
    secret = bytes(ident.box_key)
    # How a service may hand the node its passphrase: the worker must not inherit it.
    monkeypatch.setenv(PASSPHRASE_ENV, "node-passphrase-do-not-leak")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/velador-node.service")

    async def inspect(pool):
        pid = pool.workers[0].transport.get_pid()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        return argv, environ

    argv, environ = _with_pool(app, inspect)
    assert argv[1:3] == [b"-m", b"escrow_node.verifier"]
    assert b"node-passphrase-do-not-leak" not in environ
    assert b"CREDENTIALS_DIRECTORY" not in environ
    for blob in (b"\0".join(argv), environ):
        assert secret not in blob
        assert b64e(secret).encode() not in blob
        assert secret.hex().encode() not in blob


def test_a_dead_worker_is_replaced_and_its_requests_are_checked_here(node, registered):  # noqa: F811
    app, ident, clock = node
    w = registered
    cid = w.policy.case_id
    path = f"/v1/cases/{cid}/heartbeat"

    async def kill_then_beat(pool):
        first = pool.workers[0]
        first.transport.kill()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            statuses = []
            for seq in (1, 2, 3):
                body = _beat(w, seq, clock)
                r = await c.post(
                    path, content=body, headers=_headers(w.reporter, ident, path, body, clock, cid)
                )
                statuses.append(r.status_code)
            # A new worker comes up (after the first back-off) and takes requests again.
            deadline = time.monotonic() + 60
            while not any(x.ready and x is not first for x in pool.workers):
                assert time.monotonic() < deadline, "the worker was not replaced"
                await asyncio.sleep(0.05)
            before = _fallbacks(app)
            body = _beat(w, 4, clock)
            r = await c.post(
                path, content=body, headers=_headers(w.reporter, ident, path, body, clock, cid)
            )
            statuses.append(r.status_code)
            return statuses, _fallbacks(app) - before

    statuses, fallbacks_after = _with_pool(app, kill_then_beat)
    assert statuses == [200, 200, 200, 200]
    assert fallbacks_after == 0
    # The operator sees the requests the serving process had to check itself.
    assert _fallbacks(app) >= 1
    with app.state.service.store.read() as conn:
        assert conn.execute("SELECT seq FROM cases WHERE case_id = ?", (cid,)).fetchone()[0] == 4


def _verifier_children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"escrow_node.verifier" in cmdline:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


@pytest.mark.integration
def test_a_real_node_checks_in_its_worker_and_the_worker_never_outlives_it(nodes, world_for, clock):
    n = nodes("node-v")
    w = world_for(n.card)
    c = n.client(w.reporter)
    c.register_case(w.policy, w.envs_for(n.card))
    workers = wait_for(lambda: _verifier_children(n.proc.pid), 60, "a verification worker")
    assert len(workers) == 1
    c.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 1, clock.now()))
    assert n.query("SELECT seq FROM cases")[0][0] == 1
    # SIGKILL of the serving process: the worker sees the end of its stdin and exits.
    n.kill()
    wait_for(lambda: not _alive(workers[0]), 20, "the worker to exit after SIGKILL")
    # SIGTERM: a clean stop (exit 0) closes the worker too.
    n.start()
    workers = wait_for(lambda: _verifier_children(n.proc.pid), 60, "a verification worker")
    c.heartbeat(make_heartbeat(w.policy, w.reporter.sign_key, 2, clock.now()))
    assert n.term() == 0
    wait_for(lambda: not _alive(workers[0]), 20, "the worker to exit after SIGTERM")
    assert "Traceback" not in n.log_text()


def test_an_oversized_header_never_reaches_the_worker(node, registered):  # noqa: F811
    app, ident, clock = node
    w = registered
    cid = w.policy.case_id
    path = f"/v1/cases/{cid}/heartbeat"

    async def huge(pool):
        first = pool.workers[0]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            body = _beat(w, 1, clock)
            bad = await c.post(
                path, content=body, headers={"authorization": "Velador " + "A" * 1_100_000}
            )
            good = await c.post(
                path, content=body, headers=_headers(w.reporter, ident, path, body, clock, cid)
            )
        return bad.status_code, good.status_code, pool.workers == [first] and first.ready

    bad, good, same_worker = _with_pool(app, huge)
    assert (bad, good) == (401, 200)
    assert same_worker  # the worker was not fed a frame it would refuse (and die of)


def test_a_stuck_worker_is_replaced_and_check_ins_go_on(node, registered):  # noqa: F811
    """A worker that stops answering (stopped, deadlocked) must not stall check-ins: silent
    check-ins end in a release."""
    app, ident, clock = node
    w = registered
    cid = w.policy.case_id
    path = f"/v1/cases/{cid}/heartbeat"

    async def stop_then_beat(pool):
        pool.answer_timeout = 0.5
        first = pool.workers[0]
        os.kill(first.transport.get_pid(), signal.SIGSTOP)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            body = _beat(w, 1, clock)
            headers = _headers(w.reporter, ident, path, body, clock, cid)
            r = await c.post(path, content=body, headers=headers)
        deadline = time.monotonic() + 30
        while not first.gone:  # killed (SIGKILL works on a stopped process)
            assert time.monotonic() < deadline, "the stuck worker was not killed"
            await asyncio.sleep(0.05)
        return r.status_code

    assert _with_pool(app, stop_then_beat) == 200
    assert _fallbacks(app) == 1
    with app.state.service.store.read() as conn:
        assert conn.execute("SELECT seq FROM cases WHERE case_id = ?", (cid,)).fetchone()[0] == 1
