"""What every router shares: body limits (docs/protocol.md §2.5), signature check (§2), threadpool
hop, error bodies (§2.4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..auth import SignedRequest
from ..errors import BodyTooLarge
from ..service import NodeService

CASE_ID = r"^[A-Za-z0-9-]{8,64}$"

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "hint": {"type": ["string", "null"]},
    },
}
SIGNED_DOC = {
    "type": "object",
    "required": ["kind", "body", "signer", "sig"],
    "properties": {
        "kind": {"type": "string"},
        "body": {"type": "object"},
        "signer": {"type": "string"},
        "sig": {"type": "string"},
    },
}


def _err(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _err("malformed request"),
    401: _err("missing, invalid or stale request signature"),
    403: _err("signer's role does not allow the action, or registration is closed to it"),
    404: _err("unknown case, or a signer with no role in it (one answer for both)"),
    409: _err("state conflict, stale heartbeat or replayed nonce"),
    413: _err("body too large"),
    429: _err("rate limited"),
}


def ok(desc: str, schema: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": desc,
            "content": {"application/json": {"schema": schema or SIGNED_DOC}},
        },
        **ERRORS,
    }


def body_doc(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": desc,
            "content": {"application/json": {"schema": schema or {"type": "object"}}},
        },
        "security": [{"velador": []}],
    }


SIGNED = {"security": [{"velador": []}]}


def service(request: Request) -> NodeService:
    return request.app.state.service


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body is larger than the {limit}-byte limit")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is larger than the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def signed(
    request: Request,
    fn: Callable[[NodeService, SignedRequest, bytes], Any],
    limit: int | None = None,
) -> JSONResponse:
    """Read the body, authenticate, run `fn` in the threadpool (it does SQLite and crypto)."""
    svc = service(request)
    body = await read_body(request, limit or svc.config.max_body)
    header = request.headers.get("authorization")

    def run() -> Any:
        req = svc.authenticate(header, request.method, request.url.path, request.url.query, body)
        return fn(svc, req, body)

    return JSONResponse(await run_in_threadpool(run))
