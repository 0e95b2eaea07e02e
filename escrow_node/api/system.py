"""Unsigned endpoints: health, the node card, metrics (docs/protocol.md §4.7)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse

import vault

router = APIRouter(tags=["system"])

HEALTH = {
    "type": "object",
    "required": ["status", "node", "version", "time"],
    "properties": {
        "status": {"type": "string"},
        "node": {"type": "string"},
        "version": {"type": "string"},
        "time": {"type": "integer"},
        "test_clock": {"type": "boolean"},
    },
}


@router.get(
    "/v1/health",
    summary="Liveness",
    responses={200: {"description": "ok", "content": {"application/json": {"schema": HEALTH}}}},
)
async def health(request: Request):
    svc = request.app.state.service
    body = {
        "status": "ok",
        "node": svc.fingerprint,
        "version": vault.__version__,
        "time": svc.clock.now(),
    }
    if request.app.state.test_clock:
        body["test_clock"] = True
    return JSONResponse(body)


@router.get(
    "/v1/card",
    summary="The node's contact card",
    responses={
        200: {
            "description": "card",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["card"],
                        "properties": {"card": {"type": "string"}},
                    }
                }
            },
        }
    },
)
async def card(request: Request):
    return JSONResponse({"card": request.app.state.service.identity.card.text})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    responses={
        200: {
            "description": "text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        404: {"description": "metrics disabled"},
    },
    include_in_schema=True,
)
async def metrics(request: Request):
    svc = request.app.state.service
    if not svc.config.metrics:
        return PlainTextResponse("metrics disabled\n", status_code=404)

    def render() -> str:
        with svc.store.read() as conn:
            return svc.metrics.render(conn, svc.clock.now())

    return PlainTextResponse(
        await run_in_threadpool(render), media_type="text/plain; version=0.0.4"
    )
