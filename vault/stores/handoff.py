"""Hand the upload turn on once the server has the whole body (format.md §7.2).

A store's upload turn (gate.py) bounds what a dropped link makes a deposit send again: one
object per store. Holding the turn until the PUT's HTTP response arrives left the link idle
between two objects for the server's processing and the response's way back, about 55 ms per
4 MiB PUT on loopback and a round trip or more on a real uplink, while restic keeps several
uploads in flight (docs/benchmarks.md, slow link). The bound needs less: once the server's TCP
stack has acknowledged every byte of the body, the body is at the server, which completes the
PUT whether or not its answer comes back; a resumed deposit finds the object by its listing.
So on Linux, once the body is written, the turn is released as soon as the socket's send queue
(``SIOCOUTQ``: bytes written but not yet acknowledged) is empty, and the next object's PUT,
signed and waiting, starts while this one waits for its answer.

The wait is bounded, and it gives up (the turn then waits for the answer, as before) when the
server answers early (a refusal), when the queue cannot be read, or on other systems. With an
HTTP proxy or any middlebox that ends TCP, the acknowledgement comes from it rather than the
server: the bound then holds for the link up to it.

botocore gives no access to its sockets, so the connection classes of one client's pools are
replaced by subclasses (``install``) that call ``after_body`` once ``request()`` has written the
body; a botocore that changes those internals keeps the old behaviour (``install`` returns
False) rather than failing.
"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)

SIOCOUTQ = 0x5411
"""Linux ioctl (TIOCOUTQ on a TCP socket): bytes in the send queue not yet acknowledged."""

POLL_S = 0.005
"""How often the send queue is read while the body's last bytes travel."""

_local = threading.local()
"""``after_body``: what this thread's next request calls once its body is written, if anything."""


def supported() -> bool:
    return sys.platform.startswith("linux")


def unacknowledged(sock: socket.socket) -> int | None:
    """Bytes written to ``sock`` that its peer has not acknowledged; None if unknown."""
    try:
        raw = fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    return int(struct.unpack("i", raw)[0])


def wait_delivered(sock: socket.socket, timeout: float) -> bool:
    """True once the peer acknowledged everything written to ``sock``; False if the peer
    answered first (readable), the queue cannot be read, or ``timeout`` passed."""
    end = time.monotonic() + timeout
    poller = select.poll()  # not select(): a long-running process may hold descriptors > 1023
    try:
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError):
        return False
    while True:
        left = unacknowledged(sock)
        if left is None:
            return False
        if left == 0:
            return True
        wait = min(POLL_S, end - time.monotonic())
        if wait <= 0:
            return False
        try:
            readable = poller.poll(wait * 1000)
        except (OSError, ValueError):
            return False
        if readable:  # an answer (or a close) before the body is acknowledged: the response decides
            return False


@contextmanager
def after_body(callback: Callable[[socket.socket], None]) -> Iterator[None]:
    """Within the block, every request this thread makes through an installed client calls
    ``callback(sock)`` once it has written its body (a retry too)."""
    _local.after_body = callback
    try:
        yield
    finally:
        _local.after_body = None


class _Handoff:
    """Mixin for botocore's connections: run the thread's ``after_body`` once the body is out."""

    sock: Any

    def request(self, method: Any, url: Any, body: Any = None, headers: Any = None, *a, **kw):  # type: ignore[no-untyped-def]
        result = super().request(method, url, body, headers, *a, **kw)  # type: ignore[misc]
        callback = getattr(_local, "after_body", None)
        if callback is not None and self.sock is not None:
            callback(self.sock)
        return result


class _HTTPConnection(_Handoff, AWSHTTPConnection):
    pass


class _HTTPSConnection(_Handoff, AWSHTTPSConnection):
    pass


class _HTTPPool(AWSHTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(AWSHTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def install(client: Any) -> bool:
    """Make ``client`` (a boto3 client, before its first request) call ``after_body``; False
    if this botocore does not keep its pool classes where expected (nothing is changed)."""
    if not supported():
        return False
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    pools = getattr(session, "_pool_classes_by_scheme", None)
    if not isinstance(pools, dict) or set(pools) != {"http", "https"}:
        return False
    if pools["http"] is not AWSHTTPConnectionPool or pools["https"] is not AWSHTTPSConnectionPool:
        return False
    # The session's pool managers (and proxy managers, made later) share this dict.
    pools["http"], pools["https"] = _HTTPPool, _HTTPSPool
    return True
