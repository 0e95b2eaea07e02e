"""Editor release requests and the reporter's objection (docs/protocol.md §4.5)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from .. import operations as ops
from .common import SIGNED, body_doc, ok, signed

router = APIRouter(prefix="/v1/cases", tags=["editors"])
CaseId = Path(pattern=r"^[A-Za-z0-9-]{8,64}$")


@router.post(
    "/{case_id}/release-request",
    summary="Request a release (editor)",
    responses=ok("receipt (action release_request)"),
    openapi_extra=body_doc("{reason: optional text}"),
)
async def release_request(request: Request, case_id: str = CaseId):
    return await signed(
        request, lambda svc, req, body: ops.release_request(svc, req, case_id, body)
    )


@router.post(
    "/{case_id}/object",
    summary="Object to a pending editor release (reporter)",
    responses=ok("receipt (action object)"),
    openapi_extra=SIGNED,
)
async def objection(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.objection(svc, req, case_id, body))
