"""/v1/cases/{id}/heartbeat: check-ins and gossip (docs/protocol.md §4.2, §4.3)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from .. import operations as ops
from .common import SIGNED, SIGNED_DOC, body_doc, ok, signed

router = APIRouter(prefix="/v1/cases", tags=["heartbeats"])
CaseId = Path(pattern=r"^[A-Za-z0-9-]{8,64}$")


@router.post(
    "/{case_id}/heartbeat",
    summary="Heartbeat (reporter, or a peer node forwarding it)",
    responses=ok("receipt (action heartbeat)"),
    openapi_extra=body_doc("reporter-signed heartbeat document", SIGNED_DOC),
)
async def heartbeat(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.heartbeat(svc, req, case_id, body))


@router.get(
    "/{case_id}/heartbeat",
    summary="Latest heartbeat (peer node or reporter)",
    responses=ok("{heartbeat: document or null}", {"type": "object"}),
    openapi_extra=SIGNED,
)
async def latest(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.latest_heartbeat(svc, req, case_id))
