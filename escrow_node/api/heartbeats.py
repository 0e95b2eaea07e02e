"""/v1/cases/{id}/heartbeat: check-ins and gossip (docs/protocol.md §4.2, §4.3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from vault.errors import VeladorError

from .. import operations as ops
from ..errors import Replay
from ..service import NodeService
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
    # Normally answered by fastpath.NodeApp before FastAPI sees it; this route serves the rest
    # (a query string, a root path) and declares the endpoint in the OpenAPI document.
    svc = service(request)
    body = await read_body(request, svc.config.max_body)
    header = request.headers.get("authorization")
    out = await handle(
        svc, header, request.method, request.url.path, request.url.query, case_id, body
    )
    return JSONResponse(out)


async def handle(
    svc: NodeService,
    header: str | None,
    method: str,
    path: str,
    query: str,
    case_id: str,
    body: bytes,
) -> dict[str, Any]:
    """One heartbeat, from the raw request to the signed receipt (both HTTP paths use this).

    The checks run in a verification worker process when there is one ready (verifier.py),
    else here on the event loop; the write joins the next group commit of svc.committer
    (loopcommit.py) and this request waits for it without holding a thread, so one COMMIT (one
    fsync) covers every heartbeat in flight. The receipt is handed out only after COMMIT.
    """
    out = None
    if svc.verifiers is not None:
        out = await svc.verifiers.check(header, method, path, query, case_id, body)
    if out is None:
        out = ops.check_heartbeat_request(svc, header, method, path, query, case_id, body)
    req = out.req
    if req is None:  # not authenticated: nothing to burn
        assert out.error is not None
        raise out.error
    if out.checked is not None:
        svc.note_roles(req.signer, out.checked.roles)
    svc.limit(req)
    try:
        if out.error is not None:
            raise out.error
        assert out.checked is not None
        result = await svc.committer.run(ops.heartbeat_write(svc, out.checked))
    except Replay:
        raise
    except VeladorError:
        await svc.committer.run(svc.nonce_burner(req))
        raise
    return ops.finish_heartbeat(svc, out.checked.policy, result)


@router.get(
    "/{case_id}/heartbeat",
    summary="Latest heartbeat (peer node or reporter)",
    responses=ok("{heartbeat: document or null}", {"type": "object"}),
    openapi_extra=SIGNED,
)
async def latest(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.latest_heartbeat(svc, req, case_id))
