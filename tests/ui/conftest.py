"""Fixtures for `velador ui`: the real app served by uvicorn on a loopback port in a thread,
with an injected clock, and an httpx client that speaks to it as a browser would."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from cli import i18n
from tests.e2e.conftest import (  # noqa: F401 - the real nodes and people of tests/e2e
    _node_processes,
    armed,
    clock,
    mexico_time,
    net,
    nodes,
    people,
    smtp,
    v,
    webhooks,
)
from vault.clock import FakeClock

PW = "caballo bateria grapa correcta luna"
"""A passphrase zxcvbn scores strong (the app refuses weak ones, as the CLI does)."""


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def serve(home: Path, time_source: Any, lang: str = "es", **kw: Any) -> Iterator[SimpleNamespace]:
    import uvicorn

    from cli.ui.app import UiConfig, create_app

    i18n.setup(lang)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(UiConfig(home=home, port=port, clock=time_source, **kw))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    capture = LogCapture()
    for name in ("velador.ui", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addHandler(capture)
    logging.getLogger("velador.ui").setLevel(logging.INFO)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < end, "velador ui did not start"
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    clients: list[httpx.Client] = []
    try:
        yield SimpleNamespace(
            app=app,
            ui=app.state.ui,
            port=port,
            base=base,
            origin=base,
            log=capture,
            clock=time_source,
            clients=clients,
        )
    finally:
        for c in clients:
            c.close()
        server.should_exit = True
        thread.join(20)
        sock.close()
        for name in ("velador.ui", "uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).removeHandler(capture)
        i18n.setup("en")


serving = contextmanager(serve)
"""`with serving(home, clock) as srv:` the app on a loopback port for the block."""


@pytest.fixture
def ui_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ui(tmp_path, ui_clock):
    yield from serve(tmp_path / "home", ui_clock)


def browser(srv: SimpleNamespace) -> httpx.Client:
    """A client that sends Origin on state-changing requests, as Chromium does."""
    c = httpx.Client(base_url=srv.base, headers={"origin": srv.origin}, timeout=30)
    srv.clients.append(c)
    return c


def opened(srv: SimpleNamespace) -> httpx.Client:
    c = browser(srv)
    r = c.get(f"/open?token={srv.ui.sessions.token}")
    assert r.status_code == 303
    return c


def with_identity(srv: SimpleNamespace, name: str = "Rita Reportera") -> httpx.Client:
    c = opened(srv)
    r = c.post(
        "/welcome",
        data={"name": name, "role": "reporter", "passphrase": PW, "passphrase2": PW},
    )
    assert r.status_code == 303, r.text
    return c
