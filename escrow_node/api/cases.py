"""/v1/cases: registration, status and the reporter's actions (docs/protocol.md §4.1, §4.4)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from .. import operations as ops
from .common import SIGNED, body_doc, ok, signed

router = APIRouter(prefix="/v1/cases", tags=["cases"])
CaseId = Path(pattern=r"^[A-Za-z0-9-]{8,64}$", description="case id from the policy")


@router.post(
    "",
    summary="Register a case (reporter)",
    responses=ok("receipt (action register)"),
    openapi_extra=body_doc(
        "{policy: signed policy, envelopes: [this node's envelopes],"
        " chain?: [earlier policies, newest first, at most 32]}"
    ),
)
async def register(request: Request):
    svc = request.app.state.service
    return await signed(request, ops.register, limit=svc.config.max_register_body)


@router.get(
    "/{case_id}", summary="Case status (any party)", responses=ok("status"), openapi_extra=SIGNED
)
async def status(request: Request, case_id: str = CaseId, marker: str | None = None):
    return await signed(request, lambda svc, req, body: ops.status(svc, req, case_id, marker))


@router.post(
    "/{case_id}/pause",
    summary="Pause until a time (reporter)",
    responses=ok("receipt (action pause)"),
    openapi_extra=body_doc("{until: unix seconds}"),
)
async def pause(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.pause(svc, req, case_id, body))


@router.post(
    "/{case_id}/resume", summary="Resume (reporter)", responses=ok("receipt"), openapi_extra=SIGNED
)
async def resume(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.resume(svc, req, case_id, body))


@router.post(
    "/{case_id}/destroy",
    summary="Destroy envelopes (reporter)",
    responses=ok("receipt"),
    openapi_extra=SIGNED,
)
async def destroy(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.destroy(svc, req, case_id, body))


@router.post(
    "/{case_id}/release-now",
    summary="Release immediately (reporter)",
    responses=ok("receipt"),
    openapi_extra=SIGNED,
)
async def release_now(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: ops.release_now(svc, req, case_id, body))


@router.get(
    "/{case_id}/custody",
    summary="Proof of custody (reporter, editor, recipient)",
    responses=ok("custody"),
    openapi_extra=SIGNED,
)
async def custody(request: Request, nonce: str, case_id: str = CaseId, marker: str | None = None):
    return await signed(
        request, lambda svc, req, body: ops.custody(svc, req, case_id, nonce, marker)
    )
