"""A slow, breakable uplink on loopback: an HTTP/1.1 proxy in front of an S3 server (issue 14).

``SlowLink(upstream_port, up_rate=...)`` listens on 127.0.0.1 and forwards every connection to
the upstream port, at most ``up_rate`` bytes per second from clients to the server (and
``down_rate`` back, if set), all connections together, as one shared uplink would. It reads the
requests going up (request line and Content-Length; the bodies are forwarded as they come), so
it can say what was sent: each request's method, path, body length and how much of the body got
through before the link dropped.

``drop_after(nbytes)`` cuts every connection once ``nbytes`` more request-body bytes have gone
up, and refuses new connections until ``restore()``: a link that drops in the middle of an
upload. Used by bench/slowlink_bench.py (the slow-link benchmark) and by
tests/integration/test_link_drop.py (what a resumed deposit re-sends).

The proxy is for loopback tests and benchmarks only: it trusts both sides, and keeps no data.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Request:
    """One request that went up the link."""

    method: str
    path: str
    length: int  # Content-Length, -1 if the request had none
    sent: int = 0  # body bytes forwarded
    cut: bool = False  # the link dropped before the whole body went up
    start: float = 0.0  # time.monotonic() when its header went up
    end: float = 0.0  # when its last body byte went up (the header's time if it had no body)

    @property
    def complete(self) -> bool:
        return not self.cut and self.sent >= max(self.length, 0)


class Pacer:
    """Wall-clock pacing of one direction of the link, shared by all its connections."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def pace(self, n: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.rate
            wait = self._next - now
        if wait > 0:
            time.sleep(wait)


PIECE = 16 * 1024
"""Bytes forwarded per paced step: small enough that the rate is smooth at 1 MB/s."""


class SlowLink:
    def __init__(
        self,
        upstream_port: int,
        *,
        up_rate: float | None = None,
        down_rate: float | None = None,
        upstream_host: str = "127.0.0.1",
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.up, self.down = Pacer(up_rate), Pacer(down_rate)
        self.requests: list[Request] = []
        self.body_bytes_up = 0
        self._lock = threading.Lock()
        self._drop_at: int | None = None
        self._down = False
        self._conns: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    # -- control -------------------------------------------------------------------------------

    def drop_after(self, nbytes: int) -> None:
        """Cut the link once `nbytes` more request-body bytes have gone up."""
        with self._lock:
            self._drop_at = self.body_bytes_up + nbytes

    @property
    def dropped(self) -> bool:
        return self._down

    def restore(self) -> None:
        """The link is back: accept connections again (cut ones stay cut)."""
        with self._lock:
            self._down, self._drop_at = False, None

    def set_rate(self, up_rate: float | None, down_rate: float | None = None) -> None:
        self.up, self.down = Pacer(up_rate), Pacer(down_rate)

    def close(self) -> None:
        self._stop = True
        self._cut_all()
        self._listener.close()

    def __enter__(self) -> SlowLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _cut_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, server))
            threading.Thread(target=self._pump_up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(server, client), daemon=True).start()

    def _pump_down(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(PIECE):
                self.down.pace(len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close_pair(src, dst)

    def _pump_up(self, src: socket.socket, dst: socket.socket) -> None:
        """Client to server, request by request: headers as they are, bodies paced and counted."""
        buf = b""
        req: Request | None = None
        try:
            while True:
                data = buf or src.recv(PIECE)
                buf = b""
                if not data:
                    return
                if req is None or req.sent >= req.length:
                    head = data
                    while b"\r\n\r\n" not in head:
                        more = src.recv(PIECE)
                        if not more:
                            return
                        head += more
                    header, _, rest = head.partition(b"\r\n\r\n")
                    req = self._parse(header)
                    dst.sendall(header + b"\r\n\r\n")
                    buf = rest
                    if req.length <= 0:
                        req.length = 0
                    continue
                piece = data[: req.length - req.sent]
                buf = data[len(piece) :]
                self.up.pace(len(piece))
                if not self._account(req, len(piece)):
                    return
                dst.sendall(piece)
        except OSError:
            if req is not None and req.sent < req.length:
                req.cut = True
        finally:
            self._close_pair(src, dst)

    def _parse(self, header: bytes) -> Request:
        lines = header.decode("latin-1").split("\r\n")
        method, path = [*lines[0].split(" "), "", ""][:2]
        length = -1
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        req = Request(method, path, length, start=time.monotonic())
        req.end = req.start
        with self._lock:
            self.requests.append(req)
        return req

    def _account(self, req: Request, n: int) -> bool:
        """Count `n` body bytes of `req`; False (and the link cut) if the drop point is reached."""
        with self._lock:
            if self._drop_at is not None and self.body_bytes_up + n > self._drop_at:
                req.cut = True  # what would have gone up past the drop point never does
                self._down = True
                cut = True
            else:
                req.sent += n
                req.end = time.monotonic()
                self.body_bytes_up += n
                cut = False
        if cut:
            self._cut_all()
            return False
        return True

    def _close_pair(self, a: socket.socket, b: socket.socket) -> None:
        with self._lock:
            self._conns.discard(a)
            self._conns.discard(b)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()
