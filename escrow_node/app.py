"""create_app(config): the node's FastAPI application (docs/protocol.md §4).

The application owns the NodeService (storage, identity, clock) and, unless `engine=False`
(unit tests drive the sweep by hand), the APScheduler engine and the outbox worker, started in
the lifespan after a catch-up sweep: a release that came due while the node was down happens
before the first request is served, unless its pre-release peer sync takes longer than
STARTUP_SYNC_WAIT (a slow or hostile peer), in which case it completes while the node serves.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import vault
from vault.clock import Clock, SystemClock
from vault.errors import VeladorError
from vault.identity import Identity

from .api import cases, drills, editors, heartbeats, release, subscriptions, system
from .api import clock as clock_api
from .api.fastpath import NodeApp
from .config import NodeConfig
from .dashboard import Dashboard
from .db import Store
from .errors import status_of
from .metrics import Metrics
from .outbox import Outbox
from .scheduler import EngineScheduler
from .service import NodeService
from .sweep import sweep
from .verifier import VerifierPool

log = logging.getLogger("velador.node")
WORKER_THREADS = 4
STARTUP_SYNC_WAIT = 5.0
"""Seconds serving may wait for the start-up sweep's peer syncs (they go on afterwards)."""
SHUTDOWN_GRACE = 3.0
"""Seconds a stopping node waits for its deliveries and peer syncs in flight."""

SHUTDOWN_HARD = 15.0
"""Seconds the lifespan shutdown may take in all before the process exits without it (status 1,
every thread's stack in the log). Every acknowledged change is committed already, so this loses
nothing a SIGKILL would not; it keeps a stop that hangs from holding the data folder until a
service manager's SIGKILL, and says where it hung (once seen in a test: a node stuck after
"Waiting for application shutdown" for more than 20 s, cause unknown)."""


def _shutdown_watchdog(seconds: float) -> threading.Timer:
    """Start the clock of a stopping node (SHUTDOWN_HARD); cancel it once the shutdown is done."""

    def fire() -> None:
        log.error(
            "stopping took more than %g s; exiting now with every thread's stack below (all"
            " acknowledged changes are committed)",
            seconds,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        faulthandler.dump_traceback(all_threads=True)
        os._exit(1)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


class StatusCounter:
    """ASGI middleware counting answers by status class for the metrics."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.metrics.inc(
                    "velador_node_http_requests_total", code=f"{message['status'] // 100}xx"
                )
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(
    config: NodeConfig,
    identity: Identity,
    clock: Clock | None = None,
    *,
    engine: bool = True,
    test_clock: bool = False,
    store: Store | None = None,
) -> FastAPI:
    clock = clock or SystemClock()
    store = store or Store(config.db_path)
    metrics = Metrics()
    svc = NodeService(config, identity, store, clock, metrics)
    metrics.attach_db(store.read, clock.now)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Few worker threads: the work is crypto (which releases the GIL) plus one serialised
        # SQLite transaction; dozens of threads only fight over the GIL and the store lock.
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        outbox = Outbox(svc)
        sched = None
        if engine:
            sched = EngineScheduler(svc, outbox, config.tick)
            # Catch up on everything that came due while we were down. Pre-release syncs run on
            # the scheduler's PeerSync pool: serving waits for them at most STARTUP_SYNC_WAIT,
            # so a peer that drips or stalls cannot keep the node from serving.
            result = sweep(svc, syncer=sched.syncer)
            if result.deferred:
                await anyio.to_thread.run_sync(
                    sched.syncer.wait_idle, min(STARTUP_SYNC_WAIT, config.peer_timeout + 1)
                )
            log.info("start-up sweep: %d case(s) advanced", result.advanced + result.deferred)
            sched.start()
        app.state.scheduler = sched
        app.state.outbox = outbox
        if config.metrics:
            app.state.metrics_address = metrics.serve(config.metrics_listen)
        dashboard = None
        if config.dashboard:
            slow = sched.syncer.slow.is_slow if sched is not None else None
            dashboard = Dashboard(svc, slow)
            app.state.dashboard_address = dashboard.serve(config.dashboard_listen)
        if config.verify_processes:
            pool = VerifierPool(svc, config.verify_processes)
            await pool.start()
            svc.verifiers = pool
        try:
            yield
        finally:
            watchdog = _shutdown_watchdog(SHUTDOWN_HARD)
            if svc.verifiers is not None:
                pool, svc.verifiers = svc.verifiers, None
                await pool.close()
            # Work that waits on other machines gets SHUTDOWN_GRACE seconds, then is left
            # behind (server.py, "Stopping"): nothing it would do is lost, it is redone.
            deadline = time.monotonic() + SHUTDOWN_GRACE
            outbox.stop()
            syncs = sched.shutdown(deadline) if sched is not None else 0
            deliveries = outbox.close(deadline)
            metrics.close()
            if dashboard is not None:
                dashboard.close()
            svc.close()
            if syncs or deliveries:
                # They may still commit their outcome: the store stays open until the process
                # exits (SQLite commits are durable either way, as under SIGKILL).
                app.state.lingering = syncs + deliveries
                log.warning(
                    "stopping with %d peer sync(s) and %d delivery(ies) still waiting on other"
                    " machines; they are done again after the next start",
                    syncs,
                    deliveries,
                )
            else:
                store.close()
            watchdog.cancel()
            log.info("node stopped cleanly")

    app = NodeApp(
        title="Velador escrow node",
        version=vault.__version__,
        description="Holds sealed share envelopes and enforces the case switch. "
        "See docs/protocol.md (normative).",
        lifespan=lifespan,
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = svc
    app.state.test_clock = test_clock
    # The heartbeat router first: it is the hot path, and routes are matched in order.
    for module in (heartbeats, system, clock_api, cases, editors, release, subscriptions, drills):
        app.include_router(module.router)

    @app.exception_handler(VeladorError)
    async def velador_error(request: Request, exc: VeladorError) -> JSONResponse:
        status, code = status_of(exc)
        return JSONResponse(
            {"error": code, "message": exc.message, "hint": exc.hint}, status_code=status
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "message": str(exc.detail).lower(), "hint": None},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:3])
        return JSONResponse(
            {
                "error": "bad_request",
                "message": f"invalid request parameters ({where})",
                "hint": None,
            },
            status_code=400,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "message": "internal error; see the node log", "hint": None},
            status_code=500,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "velador": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "Velador <b64url(signed request document)>, docs/protocol.md §2",
            }
        }
        for path in schema.get("paths", {}).values():
            for op in path.values():
                op.get("responses", {}).pop("422", None)
                if any(p.get("in") in ("path", "query") for p in op.get("parameters", [])):
                    op["responses"].setdefault("400", {"description": "malformed request"})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(StatusCounter, metrics=metrics)
    return app
