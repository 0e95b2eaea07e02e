"""Drills (docs/protocol.md §11): start, challenges, answers, report."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request

from .. import drills
from .common import SIGNED, body_doc, ok, signed

router = APIRouter(prefix="/v1/cases", tags=["drills"])
CaseId = Path(pattern=r"^[A-Za-z0-9-]{8,64}$")
START = {
    "type": "object",
    "required": ["drill"],
    "properties": {"drill": {"type": "string"}, "marker": {"type": "string"}},
}


@router.post(
    "/{case_id}/drill",
    summary="Start a drill at this node (reporter)",
    responses=ok("receipt (action drill)"),
    openapi_extra=body_doc("{drill: id, marker}", START),
)
async def start(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: drills.start(svc, req, case_id, body))


@router.get(
    "/{case_id}/drill",
    summary="The open drill and the signer's challenges (recipient, editor, reporter)",
    responses=ok("a node-signed document of kind drill"),
    openapi_extra=SIGNED,
)
async def challenge(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: drills.challenge(svc, req, case_id))


@router.post(
    "/{case_id}/drill/answer",
    summary="Answer a drill challenge (recipient, editor)",
    responses=ok("receipt (action drill_answer) with the proofs as recorded"),
    openapi_extra=body_doc("a party-signed document of kind drill-answer"),
)
async def answer(request: Request, case_id: str = CaseId):
    return await signed(request, lambda svc, req, body: drills.answer(svc, req, case_id, body))


@router.get(
    "/{case_id}/drill/report",
    summary="Per party: notices by channel and answers (reporter)",
    responses=ok("a node-signed document of kind drill-report"),
    openapi_extra=SIGNED,
)
async def report(
    request: Request,
    case_id: str = CaseId,
    drill: str | None = Query(None, pattern=r"^[a-z0-9][a-z0-9-]{0,39}$"),
):
    return await signed(request, lambda svc, req, body: drills.report(svc, req, case_id, drill))
