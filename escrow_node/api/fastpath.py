"""POST /v1/cases/{id}/heartbeat served as plain ASGI, in front of FastAPI (docs/decisions.md,
"The heartbeat hot path").

The heartbeat is the one request a node gets at volume (issue 3: 1,000/s on two cores). Through
FastAPI's stack (error middleware, exception middleware, telemetry, exit stacks, routing,
dependency solving, request and response objects) the plumbing cost more CPU than the two
signature checks, the marker and the database write together. `NodeApp.__call__` therefore
takes exactly the requests the FastAPI route would take, runs the SAME handler
(`heartbeats.handle`) and answers with the same bytes, status and headers; everything else, and
any heartbeat request with a query string or a root path, goes through FastAPI unchanged. The
route stays declared in FastAPI for the OpenAPI document; tests drive both and compare answers.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from vault.errors import VeladorError

from ..errors import BodyTooLarge, status_of
from . import heartbeats

log = logging.getLogger("velador.node")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HEARTBEAT_PATH = re.compile(r"/v1/cases/([A-Za-z0-9-]{8,64})/heartbeat")
"""The FastAPI route's path with its CaseId pattern; matched with fullmatch, so a newline or any
other byte outside the pattern falls through to FastAPI, which answers as it always did."""
INTERNAL = "internal error; see the node log"
"""The message of app.py's handler for unexpected errors."""
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Disconnected(Exception):
    """The client went away before its body arrived: nothing to answer."""


class NodeApp(FastAPI):
    """FastAPI with the heartbeat POST answered before the middleware stack."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope.get("query_string")
            and not scope.get("root_path")
        ):
            m = HEARTBEAT_PATH.fullmatch(scope["path"])
            if m is not None:
                await self._heartbeat(scope, receive, send, m.group(1))
                return
        await super().__call__(scope, receive, send)

    async def _heartbeat(self, scope: Scope, receive: Receive, send: Send, case_id: str) -> None:
        svc = self.state.service
        try:
            header = _header(scope, b"authorization")
            body = await _read_body(scope, receive, svc.config.max_body)
            status, content = (
                200,
                await heartbeats.handle(svc, header, "POST", scope["path"], "", case_id, body),
            )
        except _Disconnected:
            return
        except VeladorError as exc:
            status, code = status_of(exc)
            content = {"error": code, "message": exc.message, "hint": exc.hint}
        except Exception:
            log.exception("unexpected error serving POST %s", scope["path"])
            status = 500
            content = {"error": "internal", "message": INTERNAL, "hint": None}
        # Byte for byte what fastapi.responses.JSONResponse renders (a client, and the duress
        # tests, see the same answer on either path).
        raw = json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")
        svc.metrics.inc("velador_node_http_requests_total", code=f"{status // 100}xx")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(raw)).encode("latin-1")), *_JSON_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": raw})


def _header(scope: Scope, name: bytes) -> str | None:
    """The first header of that (lower-case) name, decoded as Starlette does (latin-1)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refused as soon as it is known to exceed `limit` (common.read_body)."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body is larger than the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is larger than the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
