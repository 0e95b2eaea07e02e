"""/v1/cases/{id}/heartbeat: check-ins and gossip (docs/protocol.md §4.2, §4.3)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vault.errors import VeladorError

from .. import operations as ops
from ..errors import Replay
from .common import SIGNED, SIGNED_DOC, body_doc, ok, read_body, service, signed

router = APIRouter(prefix="/v1/cases", tags=["heartbeats"])
CaseId = Path(pattern=r"^[A-Za-z0-9-]{8,64}$")


@router.post(
    "/{case_id}/heartbeat",
    summary="Heartbeat (reporter, or a peer node forwarding it)",
    responses=ok("receipt (action heartbeat)"),
    openapi_extra=body_doc("reporter-signed heartbeat document", SIGNED_DOC),
)
async def heartbeat(request: Request, case_id: str = CaseId):
    # The hot path: signatures are checked in the threadpool, then the write joins the next
    # group commit and this request waits for it without holding a worker thread, so one
    # COMMIT (one fsync) covers every heartbeat in flight. The receipt is sent after COMMIT.
    svc = service(request)
    body = await read_body(request, svc.config.max_body)
    header = request.headers.get("authorization")
    method, path, query = request.method, request.url.path, request.url.query

    def prepare() -> ops.PreparedHeartbeat:
        req = svc.authenticate(header, method, path, query, body)
        return ops.prepare_heartbeat(svc, req, case_id, body)

    prepared = await run_in_threadpool(prepare)
    try:
        out = await asyncio.wrap_future(svc.store.submit(prepared.write))
    except Replay:
        raise
    except VeladorError:
        await run_in_threadpool(svc.burn_nonce, prepared.req)
        raise
    return JSONResponse(ops.finish_heartbeat(svc, prepared, out))


@router.get(
    "/{case_id}/heartbeat",
    summary="Latest heartbeat (peer node or reporter)",
    responses=ok("{heartbeat: document or null}", {"type": "object"}),
    openapi_extra=SIGNED,
)
async def latest(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.latest_heartbeat(svc, req, case_id))
