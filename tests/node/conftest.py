"""Node fixtures: real `velador node serve` processes, a file clock they share with the test,
an aiosmtpd server and a webhook receiver in the test process, and an in-thread node for fast
API tests."""

from __future__ import annotations

import email
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import uvicorn
from click.testing import CliRunner

from cli.node_cmds import node as node_cli
from escrow_node.app import create_app
from escrow_node.config import NodeConfig, RegistrationConfig
from escrow_node.testclock import write_clock
from tests.conftest import free_port, wait_http
from tests.node.builders import T0, make_world, person
from vault.clock import FakeClock
from vault.identity import load_card
from vault.nodeproto.client import NodeClient

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


def wait_for(pred, timeout: float = 20.0, what: str = "condition", interval: float = 0.02):
    """Poll `pred` until it returns a truthy value, with a deadline (never a guessed sleep)."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class SharedClock:
    """The test's side of the node's --test-clock-file: a Clock that writes the file."""

    def __init__(self, path: Path, start: int = T0) -> None:
        self.path = path
        self._now = start
        write_clock(path, start)

    def now(self) -> int:
        return self._now

    def set(self, when: int) -> None:
        self._now = when
        write_clock(self.path, when)

    def advance(self, seconds: int) -> None:
        self.set(self._now + seconds)


class RealNode:
    """One `python -m cli.node_cmds serve` process on a loopback port."""

    def __init__(self, root: Path, name: str, clock: SharedClock, tick: float = 0.1, **cfg: Any):
        self.dir = root / name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.clock = clock
        self.tick = tick
        res = CliRunner().invoke(
            node_cli,
            [
                "init",
                "--data",
                str(self.dir),
                "--name",
                name,
                "--url",
                self.url,
                "--port",
                str(self.port),
                "--registration",
                "open",
            ],
        )
        assert res.exit_code == 0, res.output
        self.card = load_card(self.dir)
        # Open registration, and webhooks on loopback (the test receivers); a test of closed
        # registration or of the SSRF guard passes registration={...} to override.
        self.configure(registration={"allow_private_targets": True})
        self.configure(**cfg)
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "serve.log"
        self.starts = 0
        self.clients: list[NodeClient] = []

    def configure(self, **cfg: Any) -> None:
        path = self.dir / "node.toml"
        doc = tomllib.loads(path.read_text())
        for section, values in cfg.items():
            doc.setdefault(section, {}).update(values)
        path.write_text(tomli_w.dumps(doc))

    def start(self) -> RealNode:
        env = dict(os.environ, VELADOR_NODE_TEST_CLOCK="1", PYTHONUNBUFFERED="1")
        self.starts += 1
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.node_cmds",
                    "serve",
                    "--data",
                    str(self.dir),
                    "--tick",
                    str(self.tick),
                    "--test-clock-file",
                    str(self.clock.path),
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_http(self.url + "/v1/health")
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def term(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(40)  # uvicorn 10 s + the shutdown watchdog 15 s (app.py), with room
        self.proc = None
        return code

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        if self.proc is not None and self.proc.poll() is None:
            self.term()

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.dir / 'node.db'}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        conn = self.db()
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def state(self, case_id: str) -> str | None:
        rows = self.query("SELECT state FROM cases WHERE case_id = ?", case_id)
        return rows[0][0] if rows else None

    def wait_state(self, case_id: str, state: str, timeout: float = 20.0) -> None:
        wait_for(lambda: self.state(case_id) == state, timeout, f"{case_id} to be {state}")

    def client(self, identity, timeout: float = 10.0) -> NodeClient:
        c = NodeClient(self.card, identity, self.clock, timeout)
        self.clients.append(c)
        return c

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def clock(tmp_path: Path) -> SharedClock:
    return SharedClock(tmp_path / "clock")


@pytest.fixture
def nodes(tmp_path: Path, clock: SharedClock):
    """Factory for real node processes; all are stopped at the end of the test."""
    made: list[RealNode] = []

    def make(name: str = "node-a", start: bool = True, **cfg: Any) -> RealNode:
        n = RealNode(tmp_path / "nodes", name, clock, **cfg)
        made.append(n)
        return n.start() if start else n

    yield make
    for n in made:
        try:
            n.stop()
        except Exception:  # pragma: no cover - a node slow to stop on a loaded machine
            if n.proc:
                n.proc.kill()
                n.proc.wait(30)  # reap it, or the next test sees a process still running


# --- SMTP and webhook receivers -------------------------------------------------------------


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"

    def for_(self, to: str, event: str | None = None) -> list[email.message.Message]:
        with self.lock:
            return [
                m
                for m in self.messages
                if m["To"] == to and (event is None or f": {event} (" in m["Subject"])
            ]


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    box.port = ctl.port  # type: ignore[attr-defined]
    yield box
    ctl.stop()


class Hooks:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.fail = False

    def for_(self, path: str, event: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                c
                for c in self.calls
                if c["path"] == path and (event is None or c["body"]["body"]["event"] == event)
            ]


@pytest.fixture
def webhooks():
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(n))
            status = 503 if hooks.fail else 204
            if not hooks.fail:
                with hooks.lock:
                    hooks.calls.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hooks.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    yield hooks
    server.shutdown()
    server.server_close()


# --- in-thread node (engine driven by hand) ------------------------------------------------


class InprocNode:
    def __init__(self, root: Path, **cfg: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.identity = person(root / "inproc-node", "inproc-node", "node", self.url)
        self.card = self.identity.card
        self.clock = FakeClock(T0)
        cfg.setdefault("registration", RegistrationConfig(mode="open", allow_private_targets=True))
        self.config = NodeConfig(
            data_dir=root / "inproc-node", name="inproc-node", url=self.url, **cfg
        )
        self.app = create_app(self.config, self.identity, self.clock, engine=False)
        self.svc = self.app.state.service
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
            )
        )
        self.clients: list[NodeClient] = []
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_http(self.url + "/v1/health")

    def client(self, identity) -> NodeClient:
        c = NodeClient(self.card, identity, self.clock, 10.0)
        self.clients.append(c)
        return c

    def sweep(self):
        from escrow_node.sweep import sweep

        return sweep(self.svc)

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self.svc.store.read() as conn:
            return conn.execute(sql, args).fetchall()

    def snapshot(self) -> dict[str, list[tuple]]:
        """State tables (not the nonce cache) for 'nothing changed' checks."""
        out = {}
        for table in ("cases", "envelopes", "audit", "outbox", "subscriptions", "notices"):
            out[table] = [tuple(r) for r in self.query(f"SELECT * FROM {table} ORDER BY 1")]
        return out

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def inproc(tmp_path: Path):
    n = InprocNode(tmp_path)
    yield n
    n.stop()


@pytest.fixture
def world_for(tmp_path: Path):
    def make(*cards, **kw):
        return make_world(tmp_path / "people", list(cards), **kw)

    return make
