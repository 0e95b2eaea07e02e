"""Hostile "nodes" on loopback: real sockets that drip, stall or flood (docs/threat-model.md,
"Slow peers"). Each accepts any number of connections, reads the request head and misbehaves:

    drip    a 200 head announcing a large body, then one byte a second, forever
    stall   accepts and never answers a byte
    flood   a 200 answer with no length, then `size` bytes as fast as the socket takes them

`connections` counts accepted connections and `sent` the body bytes written, so a test can show
that a client stopped reading early. Threads stop when the server is closed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class HostileServer:
    def __init__(self, mode: str, size: int = 50 * 1024 * 1024) -> None:
        assert mode in ("drip", "stall", "flood")
        self.mode = mode
        self.size = size
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.sent = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                part = conn.recv(4096)
                if not part:
                    return
                head += part
            if self.mode == "stall":
                self._stop.wait()
            elif self.mode == "drip":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                conn.sendall(b"Content-Length: 100000\r\n\r\n{")
                while not self._stop.wait(1.0):
                    conn.sendall(b" ")
                    self._count(1)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                conn.sendall(b"Connection: close\r\n\r\n")
                block = b" " * 65536
                left = self.size
                while left > 0 and not self._stop.is_set():
                    n = min(left, len(block))
                    conn.sendall(block[:n])
                    self._count(n)
                    left -= n
        except OSError:
            return  # the client hung up: what a bounded client does
        finally:
            conn.close()

    def _count(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def finishes_within(seconds: float, fn: Any) -> Any:
    """Run `fn` in a thread and fail (instead of hanging the suite) if it is still running
    after `seconds`. Returns fn's result or re-raises its exception."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised below, in the test's thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still waiting after {seconds} s: the call is not bounded"
    if "error" in box:
        raise box["error"]
    return box.get("value")
