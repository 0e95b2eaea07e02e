"""Notification addresses (docs/protocol.md §8.1)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from .. import operations as ops
from .common import body_doc, ok, signed

router = APIRouter(prefix="/v1/cases", tags=["notifications"])
CaseId = Path(pattern=r"^[A-Za-z0-9-]{8,64}$")
SUBS = {"type": "object", "required": ["case_id", "role", "subscriptions"]}
TARGET = {
    "type": "object",
    "required": ["channel", "target"],
    "properties": {"channel": {"enum": ["email", "webhook"]}, "target": {"type": "string"}},
}


@router.post(
    "/{case_id}/subscribe",
    summary="Register an email or webhook for the signer's notices",
    responses=ok("the signer's addresses", SUBS),
    openapi_extra=body_doc("{channel, target}", TARGET),
)
async def subscribe(request: Request, case_id: str = CaseId):
    return await signed(
        request, lambda svc, req, body: ops.subscribe(svc, req, case_id, body, True)
    )


@router.post(
    "/{case_id}/unsubscribe",
    summary="Remove an address",
    responses=ok("the signer's addresses", SUBS),
    openapi_extra=body_doc("{channel, target}", TARGET),
)
async def unsubscribe(request: Request, case_id: str = CaseId):
    return await signed(
        request, lambda svc, req, body: ops.subscribe(svc, req, case_id, body, False)
    )
