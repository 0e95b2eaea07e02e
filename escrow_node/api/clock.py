"""The node's signed time, for its peers' clock check (docs/protocol.md §4.8, §7.1)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vault.encoding import b64d
from vault.errors import FormatError

from ..errors import BadRequest

router = APIRouter(tags=["system"])

CLOCK = {
    "type": "object",
    "required": ["kind", "body", "sig"],
    "properties": {"body": {"type": "object"}},
}


# Unpadded base64url of 32 bytes, canonical (the last character carries 4 bits).
NONCE = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$"


@router.get(
    "/v1/clock",
    summary="The node's time, signed with the asker's nonce",
    responses={200: {"description": "clock", "content": {"application/json": {"schema": CLOCK}}}},
)
async def clock(request: Request, nonce: str = Query(..., pattern=NONCE)):
    # Unsigned on purpose: a peer whose clock is far off has every signed request refused
    # (timestamp tolerance, §2.3), and it is exactly that peer which needs this answer.
    try:
        b64d(nonce, "clock nonce", 32)
    except FormatError as exc:
        raise BadRequest(str(exc)) from exc
    svc = request.app.state.service

    def sign() -> dict:
        body = {"v": 1, "node": svc.fingerprint, "time": svc.clock.now(), "nonce": nonce}
        return svc._sign("clock", body)

    return JSONResponse(await run_in_threadpool(sign))
