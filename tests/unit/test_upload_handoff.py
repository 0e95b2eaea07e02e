"""The upload turn goes on once the server has the whole body (vault/stores/handoff.py, format.md
§7.2), not when its answer comes back: the store's next PUT goes while the first one waits for
its answer, and never before the first body was acknowledged.

Real parts: a bare HTTP/1.1 server on loopback that reads each PUT whole and answers only when
the test lets it (S3's answer is an empty 200 with an ETag), the real S3Store with its boto3
client, and the real per-store turns of a deposit (gate.one_upload_per_store).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from vault.stores import gate, handoff
from vault.stores.s3 import S3Store

pytestmark = pytest.mark.skipif(not handoff.supported(), reason="SIOCOUTQ is Linux's")

SIZE = 512 * 1024  # over gate.SMALL_OBJECT: the PUT takes the store's turn


class HeldServer:
    """Reads requests whole; answers each only once `release` is set."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.release = threading.Event()
        self.bodies: list[tuple[str, float]] = []  # (path, when its body was read whole)
        self.heads: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    more = conn.recv(65536)
                    if not more:
                        return
                    buf += more
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                self.heads.append(head.decode("latin-1").lower())
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buf) < length:
                    more = conn.recv(1 << 20)
                    if not more:
                        return
                    buf += more
                buf = buf[length:]
                with self.lock:
                    self.bodies.append((lines[0].split(" ")[1], time.monotonic()))
                self.release.wait(30)
                conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "0"\r\nContent-Length: 0\r\n\r\n')

    def close(self) -> None:
        self.release.set()
        self.sock.close()


@pytest.fixture
def server():
    s = HeldServer()
    yield s
    s.close()


@pytest.fixture
def store(server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    return S3Store(f"s3://bucket/v?endpoint=http://127.0.0.1:{server.port}&region=us-east-1")


def test_the_next_put_to_a_store_goes_while_the_first_waits_for_its_answer(server, store):
    # Given a deposit's upload turns and two objects for the same store, uploaded at once
    with gate.one_upload_per_store(), ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(store.put, f"objects/{i}", os.urandom(SIZE)) for i in range(2)]
        # When the server has read the first body whole and holds its answer back
        deadline = time.monotonic() + 20
        while len(server.bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling with a deadline
        seen = len(server.bodies)
        server.release.set()
        for f in futures:
            f.result(timeout=30)
    # Then the second body arrived while the first answer was still held: the turn went on once
    # the first body was acknowledged (it used to wait for the answer: one body, then none)
    assert seen == 2
    # and no PUT asked for "100 Continue" (a round trip of idle link per object)
    assert len(server.heads) == 2 and not [h for h in server.heads if "\nexpect:" in h]


@pytest.fixture
def stalled():
    """(client, peer, bytes sent): a TCP connection whose peer reads nothing, with the client's
    send queue filled, so its body cannot all be acknowledged."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    client.setblocking(False)
    sent = 0
    try:
        while sent < 8 << 20:
            sent += client.send(b"x" * 65536)
    except BlockingIOError:
        pass
    client.setblocking(True)
    yield client, peer, sent
    for s in (client, peer, listener):
        s.close()


def test_the_turn_is_kept_while_the_body_is_not_acknowledged(stalled) -> None:
    # Given a body the peer does not read
    client, peer, sent = stalled
    # Then it is not delivered (the wait gives up at its bound, the turn stays held)
    assert handoff.unacknowledged(client) > 0
    assert handoff.wait_delivered(client, 0.05) is False
    # When the peer reads everything, it is
    got = 0
    peer.settimeout(10)
    while got < sent:
        got += len(peer.recv(1 << 20))
    deadline = time.monotonic() + 10
    delivered = False
    while not delivered and time.monotonic() < deadline:
        delivered = handoff.wait_delivered(client, 0.5)
    assert delivered and handoff.unacknowledged(client) == 0


def test_an_early_answer_ends_the_wait(stalled) -> None:
    # Given a peer that answers before reading the body (a refusal), then stops reading
    client, peer, _ = stalled
    peer.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    # Then the wait ends at once, without the turn going on (the answer decides), long
    # before its bound
    start = time.monotonic()
    assert handoff.wait_delivered(client, 30) is False
    assert time.monotonic() - start < 25  # it did not wait out the bound


def test_a_client_that_cannot_be_adapted_keeps_the_old_behaviour() -> None:
    # Given something that is not a botocore client with the expected internals
    class Odd:
        pass

    # Then nothing is changed and the caller is told
    assert handoff.install(Odd()) is False
