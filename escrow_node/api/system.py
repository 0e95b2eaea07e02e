"""Unsigned endpoints: health and the node card (docs/protocol.md §4.7).

Metrics are not served here: they have their own loopback-only listener (escrow_node/metrics.py),
so nothing that publishes this port publishes them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

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
