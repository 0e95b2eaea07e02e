"""Where the nodes' notifications land: an aiosmtpd server and a webhook receiver.

Both record every delivery with its stable id (the `Velador-Delivery` header, which is also the
outbox key `<notice id>:<channel>:<target>`). The webhook receiver can lose its answer: with a
seeded probability it records the call and then answers 503, so the node delivers the same id
again, which is the at-least-once case the duplicate check must tolerate.
"""

from __future__ import annotations

import collections
import email
import json
import random
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import free_port


@dataclass(frozen=True)
class Delivery:
    channel: str  # "email" | "webhook"
    target: str  # the address or URL it was sent to
    key: str  # Velador-Delivery


class Deliveries:
    """Thread-safe record shared by both receivers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Delivery] = []

    def add(self, d: Delivery) -> None:
        with self.lock:
            self.items.append(d)

    def counts(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(d.key for d in self.items)

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.items)


class _Mailbox:
    def __init__(self, record: Deliveries) -> None:
        self.record = record

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd hook
        msg = email.message_from_bytes(envelope.content)
        # A long header is folded over lines; the id itself holds no whitespace.
        key = "".join(str(msg["Velador-Delivery"] or "missing").split())
        for rcpt in envelope.rcpt_tos:
            self.record.add(Delivery("email", rcpt, key))
        return "250 OK"


class Receivers:
    def __init__(self, seed: int, lose_answer: float = 0.0) -> None:
        from aiosmtpd.controller import Controller

        self.record = Deliveries()
        self.rng = random.Random(f"{seed}:webhooks")
        self.lose_answer = lose_answer
        self.lost_answers = 0
        self._rng_lock = threading.Lock()
        self.smtp = Controller(_Mailbox(self.record), hostname="127.0.0.1", port=free_port())
        self.smtp.start()
        self.smtp_port = self.smtp.port
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length", "0"))
                json.loads(self.rfile.read(n))  # the body must be JSON
                key = self.headers.get("Velador-Delivery", "missing")
                outer.record.add(Delivery("webhook", outer.url + self.path, key))
                with outer._rng_lock:
                    lose = outer.rng.random() < outer.lose_answer
                    outer.lost_answers += lose
                self.send_response(503 if lose else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.smtp.stop()
