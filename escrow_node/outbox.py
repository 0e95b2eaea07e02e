"""Transactional outbox delivery (docs/protocol.md §8.3).

Rows are written in the same transaction as the state change that caused them; this worker
delivers them afterwards and marks each one delivered in its own transaction. A crash between
sending and marking means the message is sent again after restart: delivery is at-least-once,
and each message carries a stable id (`Velador-Delivery` header, email Message-ID) so a receiver
can drop the rare duplicate. A crash can never lose a message: the row exists before the state
change is answered.

Retries back off exponentially (5 s, 10 s, 20 s ... capped at 1 h) and give up after
MAX_ATTEMPTS; failed rows stay visible in `velador node status` and the metrics. Backoff uses the
real clock, not the case clock: it is about the network, not about the case.
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx

from vault.cards import parse_card
from vault.encoding import canonical_json
from vault.errors import VeladorError

from . import gossip, targets
from .config import SmtpConfig
from .notices import SILENT_EVENTS

log = logging.getLogger("velador.node.outbox")
MAX_ATTEMPTS = 40
BATCH = 64


def backoff(attempts: int) -> float:
    return float(min(3600, 5 * 2 ** max(0, attempts - 1)))


class DeliveryError(Exception):
    pass


def send_email(
    smtp: SmtpConfig, target: str, key: str, subject: str, notice: dict[str, Any]
) -> None:
    if not smtp.enabled:
        raise DeliveryError("no SMTP server configured")
    body = notice["body"]
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = target
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    domain = smtp.sender.rpartition("@")[2] or "velador.invalid"
    msg["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"
    msg["Velador-Delivery"] = key
    lines = [
        body["text"],
        "",
        f"What to do: {body['next']}",
        "",
        f"Case: {body['case_id']}",
        f"Event: {body['event']}  State: {body['state']}",
        f"Node: {body['node_name']} ({body['node']}) {body['node_url']}",
        "",
        "This message carries no secret. The signed notice below can be checked with the",
        "node's contact card:",
        "",
        json.dumps(notice, indent=1, sort_keys=True),
    ]
    msg.set_content("\n".join(lines))
    password = ""
    if smtp.password_file:
        password = Path(smtp.password_file).read_text("utf-8").strip()
    context = ssl.create_default_context()
    if smtp.security == "ssl":
        server: smtplib.SMTP = smtplib.SMTP_SSL(
            smtp.host, smtp.port, timeout=smtp.timeout, context=context
        )
    else:
        server = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    try:
        if smtp.security == "starttls":
            server.starttls(context=context)
        if smtp.username:
            server.login(smtp.username, password)
        server.send_message(msg)
    finally:
        try:
            server.quit()
        except (smtplib.SMTPException, OSError):
            server.close()


class Outbox:
    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._lock = threading.Lock()
        self._again = threading.Event()
        self._http = httpx.Client(timeout=svc.config.webhook_timeout, follow_redirects=False)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="outbox")
        self.stopping = False

    def close(self) -> None:
        self.stopping = True
        self._pool.shutdown(wait=True)
        self._http.close()

    def deliver_due(self) -> int:
        """Deliver every due row; if already running, ask the running pass to loop once more."""
        if not self._lock.acquire(blocking=False):
            self._again.set()
            return 0
        total = 0
        try:
            while not self.stopping:
                self._again.clear()
                n = self._pass()
                total += n
                if n < BATCH and not self._again.is_set():
                    break
        finally:
            self._lock.release()
        return total

    def _pass(self) -> int:
        with self.svc.store.read() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    "SELECT id, key, channel, target, payload, attempts FROM outbox"
                    " WHERE delivered IS NULL AND failed IS NULL AND next_attempt <= ?"
                    " ORDER BY id LIMIT ?",
                    (time.time(), BATCH),
                )
            ]
        if rows:
            list(self._pool.map(self._deliver, rows))
        return len(rows)

    def _deliver(self, row: dict[str, Any]) -> None:
        try:
            self._send(row)
        except (
            DeliveryError,
            VeladorError,
            OSError,
            smtplib.SMTPException,
            httpx.HTTPError,
        ) as exc:
            attempts = row["attempts"] + 1
            now = time.time()
            failed = now if attempts >= MAX_ATTEMPTS else None
            log.warning(
                "delivery %s (%s) failed (attempt %d): %s", row["id"], row["channel"], attempts, exc
            )
            with self.svc.store.tx() as conn:
                conn.execute(
                    "UPDATE outbox SET attempts = ?, next_attempt = ?, failed = ?, last_error = ?"
                    " WHERE id = ?",
                    (attempts, now + backoff(attempts), failed, str(exc)[:500], row["id"]),
                )
            if not _silent(row):
                self.svc.metrics.inc(
                    "velador_node_notifications_total", channel=row["channel"], result="error"
                )
            return
        with self.svc.store.tx() as conn:
            conn.execute(
                "UPDATE outbox SET delivered = ?, attempts = attempts + 1 WHERE id = ?",
                (time.time(), row["id"]),
            )
        if not _silent(row):
            self.svc.metrics.inc(
                "velador_node_notifications_total", channel=row["channel"], result="ok"
            )

    def _send(self, row: dict[str, Any]) -> None:
        payload = json.loads(row["payload"])
        if row["channel"] == "peer":
            gossip.forward(self.svc, parse_card(row["target"]), payload)
        elif row["channel"] == "email":
            send_email(
                self.svc.config.smtp,
                row["target"],
                row["key"],
                payload["subject"],
                payload["notice"],
            )
        elif row["channel"] == "webhook":
            notice = payload["notice"]
            targets.check_delivery(self.svc.config, row["target"])  # DNS may have changed
            resp = self._http.post(
                row["target"],
                content=canonical_json(notice),
                headers={
                    "Content-Type": "application/json",
                    "Velador-Delivery": row["key"],
                    "Velador-Event": notice["body"]["event"],
                },
            )
            if not 200 <= resp.status_code < 300:
                raise DeliveryError(f"webhook answered {resp.status_code}")
        else:
            raise DeliveryError(f"unknown channel {row['channel']!r}")


def _silent(row: dict[str, Any]) -> bool:
    """A delivery of a silent-alarm notice: left out of the metrics (notices.SILENT_EVENTS)."""
    if row["channel"] == "peer":
        return False
    try:
        return json.loads(row["payload"])["notice"]["body"]["event"] in SILENT_EVENTS
    except (ValueError, KeyError, TypeError):
        return False
