"""A slow, breakable uplink on loopback: an HTTP/1.1 proxy in front of an S3 server (issue 14).

``SlowLink(upstream_port, up_rate=...)`` listens on 127.0.0.1 and forwards every connection to
the upstream port, at most ``up_rate`` bytes per second from clients to the server (and
``down_rate`` back, if set), all connections together, as one shared uplink would. It reads the
requests going up (request line and Content-Length; the bodies are forwarded as they come), so
it can say what was sent: each request's method, path, body length and how much of the body got
through before the link dropped.

``drop_after(nbytes)`` takes the link down once ``nbytes`` more request-body bytes have gone
up, and refuses new connections until ``restore()``: a link that drops in the middle of an
upload. As on a real link, a byte the client's TCP saw acknowledged still reaches the server:
the proxy's kernel acknowledges what it buffers (at most RCVBUF per connection, the link's
queue), so at the drop each connection forwards what it holds and what its kernel buffered,
ends the request toward the server (FIN, so a body that arrived whole is stored) and closes the
client side; whatever the client sends after that never arrives. (Cutting what the proxy held
would lose bytes that the client was told had arrived, which no real link does, and which
Velador's upload turn relies on: format.md §7.2.) Used by bench/slowlink_bench.py (the
slow-link benchmark) and by tests/integration/test_link_drop.py (what a resumed deposit
re-sends).

The proxy is for loopback tests and benchmarks only: it trusts both sides, and keeps no data.
"""

from __future__ import annotations

import contextlib
import fcntl
import select
import socket
import struct
import termios
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


QUEUE_S = 0.02
"""The link's queue, in seconds of sending: a piece that reaches the link at most this late
keeps its slot. Without it the proxy's own work between two pieces (recv, forward, the sleep's
overshoot) was lost link time whenever one connection was sending: one stream got 3.70 MB/s of
a 4 MB/s link and four got 3.96 (measured 2026-12-03), which favoured tools that upload on
several connections. A real uplink keeps sending from its router's queue meanwhile; 20 ms of it
is a small queue (80 KB at 4 MB/s). A piece that comes later than that finds the link idle and
starts when it comes, as before."""


class Pacer:
    """Wall-clock pacing of one direction of the link, shared by all its connections: a link of
    `rate` bytes per second with a queue of QUEUE_S."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def pace(self, n: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            # Late by less than the queue: the link was busy meanwhile, keep the slot. Later: the
            # link went idle, and this piece starts now.
            start = self._next if now - self._next <= QUEUE_S else now
            self._next = start + n / self.rate
            wait = self._next - now
        if wait > 0:
            time.sleep(wait)


PIECE = 16 * 1024
"""Bytes forwarded per paced step: small enough that the rate is smooth at 1 MB/s."""

RCVBUF = 64 * 1024
"""Receive buffer of the proxy's client-side sockets: what the link holds in transit besides
the piece being paced (the kernel acknowledges it to the client)."""

WAKE_S = 0.01
"""How often a connection waiting for its client looks whether the link went down."""


def _buffered(sock: socket.socket) -> int:
    """Bytes the kernel received (and acknowledged) on `sock` that were not read yet."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])


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
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)  # before listen
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
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
        """Client to server, request by request: headers as they are, bodies paced and counted.
        When the link goes down: what was acknowledged goes up, then the request is ended."""
        buf = b""
        req: Request | None = None
        # Wait with poll(), not a socket timeout: the other pump sends to this socket, and a
        # timeout would cut it whenever the client reads its answers slowly.
        poller = select.poll()
        poller.register(src, select.POLLIN)
        drained = False

        def recv() -> bytes:
            nonlocal drained
            while not self._down:
                if poller.poll(WAKE_S * 1000):
                    return src.recv(PIECE)
            if drained:
                return b""
            drained = True  # once: what the kernel acknowledged before the drop, not after
            want, got = _buffered(src), b""
            while len(got) < want:
                more = src.recv(want - len(got))
                if not more:
                    break
                got += more
            return got

        graceful = False
        try:
            while True:
                data = buf or recv()
                buf = b""
                if not data:
                    graceful = self._down
                    return
                if req is None or req.sent >= req.length:
                    head = data
                    while b"\r\n\r\n" not in head:
                        more = recv()
                        if not more:
                            graceful = self._down
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
                if not self._down:
                    self.up.pace(len(piece))
                self._account(req, len(piece))
                dst.sendall(piece)
        except OSError:
            pass
        finally:
            if req is not None and req.sent < req.length:
                req.cut = True
            if graceful:  # the link went down: end the request, let the server finish or drop it
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                with self._lock:
                    self._conns.discard(src)
                with contextlib.suppress(OSError):
                    src.shutdown(socket.SHUT_RDWR)
                src.close()
            else:
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

    def _account(self, req: Request, n: int) -> None:
        """Count `n` body bytes of `req`; the link goes down once the drop point is reached (the
        bytes in hand were acknowledged to the client: they still go up)."""
        with self._lock:
            if self._drop_at is not None and self.body_bytes_up + n > self._drop_at:
                self._down, self._drop_at = True, None
            req.sent += n
            req.end = time.monotonic()
            self.body_bytes_up += n

    def _close_pair(self, a: socket.socket, b: socket.socket) -> None:
        with self._lock:
            self._conns.discard(a)
            self._conns.discard(b)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()
