"""A real SOCKS5 server (microsocks) and loopback relays that see who connects.

microsocks logs nothing, so the proof that a connection went through it is where it comes from:
microsocks is started with `-b 127.0.0.2`, so every connection it makes to a target comes from
127.0.0.2, while a direct connection from the test process comes from 127.0.0.1. Each node (or
webhook receiver) is reached through a `Relay` on 127.0.0.1 that records the source address of
every connection and forwards the bytes to the real server. "Everything went through the proxy"
is then "every source the relay saw is 127.0.0.2".

A missing microsocks binary fails the test with the package to install (never a silent skip).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time

import pytest

from tests.conftest import free_port

PROXIED_FROM = "127.0.0.2"


class Socks:
    def __init__(self) -> None:
        exe = shutil.which("microsocks")
        if exe is None:
            pytest.fail(
                "microsocks is not installed: install the Debian/Ubuntu package 'microsocks' "
                "(make test does it when run as root)"
            )
        self.port = free_port()
        self.url = f"socks5h://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [exe, "-i", "127.0.0.1", "-p", str(self.port), "-b", PROXIED_FROM],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end or self.proc.poll() is not None:
                    raise RuntimeError("microsocks did not start") from None
                time.sleep(0.02)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Relay:
    """127.0.0.1:port -> 127.0.0.1:target, recording each connection's source address."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.sources: list[str] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}"

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.sources)

    def _accept(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.sources.append(addr[0])
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._open += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()
        with self._lock:
            for s in self._open:
                s.close()


def relayed_node(root, name: str, clock, **cfg):
    """A RealNode (not started) whose card URL is `http://localhost:<relay>`: a client reaching
    it by its card goes through a Relay that records where each connection came from. The
    node's own `url` stays the direct one (health checks by the test are not counted)."""
    from click.testing import CliRunner

    from cli.node_cmds import node as node_cli
    from tests.node.conftest import RealNode
    from vault.identity import load_card

    node = RealNode.__new__(RealNode)
    node.dir = root / name
    node.port = free_port()
    node.url = f"http://127.0.0.1:{node.port}"
    node.clock = clock
    node.tick = 0.1
    node.relay = Relay(node.port)
    args = ["init", "--data", str(node.dir), "--name", name, "--url", node.relay.url()]
    res = CliRunner().invoke(node_cli, [*args, "--port", str(node.port), "--registration", "open"])
    assert res.exit_code == 0, res.output
    node.card = load_card(node.dir)
    # Peers and webhooks on loopback (the relays, the test receivers), as the other fixtures.
    node.configure(registration={"allow_private_targets": True})
    node.configure(**cfg)
    node.proc = None
    node.log = node.dir / "serve.log"
    node.starts = 0
    node.clients = []
    return node
