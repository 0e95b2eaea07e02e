"""Release fetch and the notice inbox (docs/protocol.md §4.6, §8.2)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request

from .. import operations as ops
from .common import SIGNED, ok, signed

router = APIRouter(prefix="/v1", tags=["release"])
CaseId = Path(pattern=r"^[A-Za-z0-9-]{8,64}$")

RELEASE = {
    "type": "object",
    "required": ["case_id", "node", "released_at", "policy", "envelopes"],
    "properties": {
        "case_id": {"type": "string"},
        "node": {"type": "string"},
        "released_at": {"type": "integer"},
        "policy": {"type": "object"},
        "chain": {"type": "array", "items": {"type": "object"}, "maxItems": 32},
        "envelopes": {"type": "array", "items": {"type": "object"}},
    },
}
INBOX = {
    "type": "object",
    "required": ["notices"],
    "properties": {"notices": {"type": "array", "items": {"type": "object"}}},
}


@router.get(
    "/cases/{case_id}/release",
    summary="Fetch released envelopes (recipient)",
    responses=ok("policy and this recipient's envelopes", RELEASE),
    openapi_extra=SIGNED,
)
async def fetch(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.fetch_release(svc, req, case_id))


@router.get(
    "/inbox",
    summary="Notices addressed to the signer",
    responses=ok("notices after `after`", INBOX),
    openapi_extra=SIGNED,
)
async def inbox(
    request: Request,
    after: int = Query(0, ge=0, le=2**62),
    limit: int = Query(100, ge=1, le=500),
):
    return await signed(request, lambda svc, req, body: ops.inbox(svc, req, after, limit))
