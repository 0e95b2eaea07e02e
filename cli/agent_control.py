"""The running agent's control socket: `velador agent lock | unlock | status` talk to it.

A Unix socket `agent.sock` in the home folder (the home is 0700; the socket is created 0600 and
the agent checks the caller's user id with SO_PEERCRED where the system has it), like ssh-agent's.
One JSON request per connection, one JSON answer, a line each. `unlock` carries the passphrase
over the socket, never in argv or the environment of the running agent.

The socket also keeps a home to one agent: a second `velador agent` finds a live socket and
refuses to start, so two agents never deposit at once. A socket left by an agent that died is
removed by the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vault.errors import N_, NotFoundError, PolicyError, VeladorError

SOCKET_NAME = "agent.sock"
MAX_REQUEST = 64 * 1024
CLIENT_WAIT = 5.0
"""Seconds a client may take to send its request: the agent serves one at a time."""


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


def _peer_uid(conn: socket.socket) -> int | None:
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:  # pragma: no cover - not Linux: the 0600 socket in a 0700 home guards it
        return None
    raw = conn.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[1])


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        part = conn.recv(4096)
        if not part:
            break
        buf += part
        if len(buf) > MAX_REQUEST:
            raise ValueError("request too large")
    return buf.split(b"\n", 1)[0]


class ControlServer:
    """The listening socket, served one connection at a time from the agent's main loop."""

    def __init__(self, home: Path) -> None:
        self.path = socket_path(home)
        if len(os.fsencode(self.path)) >= 100:
            raise PolicyError(
                N_("the home folder path is too long for the agent's socket (%(path)s)"),
                hint=N_("use a shorter --home path"),
                path=str(self.path),
            )
        if self.path.exists() or self.path.is_symlink():
            try:
                request(home, {"op": "ping"}, timeout=2.0)
            except NotFoundError:
                self.path.unlink()  # left by an agent that ended without cleaning up
            else:
                raise PolicyError(
                    N_("an agent is already running for this home"),
                    hint=N_("use it ('velador agent status'), or stop it first"),
                )
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            self.sock.bind(str(self.path))
        finally:
            os.umask(old)
        self.path.chmod(0o600)
        self._ino = self.path.stat().st_ino
        self.sock.listen(8)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve_one(self, handle: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        try:
            conn, _addr = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            conn.setblocking(True)
            conn.settimeout(CLIENT_WAIT)
            try:
                uid = _peer_uid(conn)
                if uid is not None and uid != os.getuid():
                    return
                req = json.loads(_read_line(conn) or b"{}")
                if not isinstance(req, dict):
                    raise ValueError("not an object")
                answer = handle(req)
            except (OSError, ValueError):
                return  # a client that hung up, stalled or sent garbage: nothing to answer
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(answer).encode() + b"\n")

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._ino:  # never remove another agent's socket
                self.path.unlink()


def request(home: Path, req: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Send one request to the running agent and return its answer.

    The timeout is long because `unlock` runs the passphrase's key derivation in the agent."""
    path = socket_path(home)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotFoundError(
                N_("no agent is running for this home"), hint=N_("start it with 'velador agent'")
            ) from None
        sock.sendall(json.dumps(req).encode() + b"\n")
        line = _read_line(sock)
    except OSError as exc:
        raise VeladorError(
            N_("the agent did not answer (%(error)s)"), error=type(exc).__name__
        ) from None
    finally:
        sock.close()
    try:
        answer = json.loads(line)
    except ValueError:
        raise VeladorError(N_("the agent did not answer")) from None
    if not isinstance(answer, dict):
        raise VeladorError(N_("the agent did not answer"))
    return answer
