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

Fairness (issue 11, finding 5): deliveries run on WORKERS threads, at most PER_CASE of them for
one case at a time (its gossip to peers counts apart from its notices), and free slots go
round-robin across cases (each case's oldest due row
first, then each case's second...). Every delivery is bounded by a wall-clock deadline
(vault.nodeproto.transport), so a case whose webhooks stall or drip holds at most PER_CASE
slots for at most that long, and another case's `editor_pending`, `overdue` or `released` notice
goes out at once.

Privacy (protocol §8.5): delivery errors are logged and stored with the target reduced to
`a***@example.org` or the webhook's scheme and host; the full address never reaches the log.
Webhooks go through [network] proxy when one is set; onion webhooks need it.
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
from vault.nodeproto import transport

from . import gossip, targets
from .config import SmtpConfig
from .notices import SILENT_EVENTS

log = logging.getLogger("velador.node.outbox")
MAX_ATTEMPTS = 40
BATCH = 64
"""Due rows looked at per case and per round (rows beyond wait for the next round)."""
WORKERS = 8
PER_CASE = 2
"""Deliveries of one case in flight at once: its slow targets can hold no more slots."""
WEBHOOK_ANSWER_MAX = 64 * 1024
"""A webhook's answer body is not used; more than this is refused."""


def backoff(attempts: int) -> float:
    return float(min(3600, 5 * 2 ** max(0, attempts - 1)))


class DeliveryError(Exception):
    pass


def redact_target(channel: str, target: str) -> str:
    """What a log may say about a target: `a***@example.org`, `https://host:port`."""
    if channel == "email":
        local, _, domain = target.rpartition("@")
        return f"{local[:1]}***@{domain}" if local else "***"
    if channel == "webhook":
        return transport.safe_url(target)
    return channel


def redact_error(text: str, channel: str, target: str) -> str:
    """An error text without the target (smtplib's errors quote the refused address)."""
    if channel in ("email", "webhook") and target:
        text = text.replace(target, redact_target(channel, target))
        if channel == "email" and "@" in target:
            text = text.replace(target.rpartition("@")[0], "***")
    return text


def post_webhook(
    http: httpx.Client,
    target: str,
    content: bytes,
    headers: dict[str, str],
    timeout: float,
    proxy: str | None,
) -> None:
    """POST one notice to a webhook: the one place a webhook target is contacted, so checks
    on the target (where it may point) belong here. Bounded by `timeout` (wall clock)."""
    try:
        transport.route(target, proxy)
        status, _ = transport.fetch(
            http,
            "POST",
            target,
            content=content,
            headers=headers,
            timeout=timeout,
            max_bytes=WEBHOOK_ANSWER_MAX,
        )
    except transport.ProxyRequired as exc:
        raise DeliveryError("an onion webhook needs [network] proxy") from exc
    except transport.TransportError as exc:
        raise DeliveryError(f"webhook {exc}") from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook answered {status}")


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


def _lane(row: dict[str, Any]) -> str:
    """The fairness key: a case's gossip and its notices are separate lanes, so a party's
    stalling webhooks cannot slow the forwarding of the case's heartbeats to its peers."""
    return f"{row['case_id'] or ''}:{'peer' if row['channel'] == 'peer' else 'notice'}"


class Outbox:
    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._lock = threading.Lock()
        self._again = threading.Event()
        self._cv = threading.Condition()
        self._inflight: dict[int, str] = {}
        """Row id -> case id of the deliveries running now."""
        self.proxy: str | None = getattr(svc.config, "proxy", None)
        self._http = transport.make_http(self.proxy, svc.config.webhook_timeout)
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="outbox")
        self.stopping = False

    def close(self, deadline: float | None = None) -> int:
        """Stop starting deliveries; wait for those in flight until `deadline` (monotonic).

        Returns how many are still running then. Those are left to end on their own: a
        delivery that stalls must not hold up a node that was told to stop, and one cut short
        is sent again after the next start (at-least-once, protocol §8.3; receivers drop
        repeats by Velador-Delivery). Without a deadline, waits for all of them."""
        self.stop()
        with self._cv:
            while self._inflight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cv.wait(timeout=1.0 if left is None else min(left, 1.0))
            lingering = len(self._inflight)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not lingering:
            self._http.close()
        return lingering

    def stop(self) -> None:
        """Start no more deliveries (the running loop ends within a second)."""
        self.stopping = True
        self._wake()

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def deliver_due(self) -> int:
        """Deliver every due row, fairly across cases; returns how many were attempted.

        One caller runs the loop; another call meanwhile only asks it to look again. The loop
        ends when nothing is due and nothing is in flight."""
        if not self._lock.acquire(blocking=False):
            self._again.set()
            self._wake()
            return 0
        total = 0
        try:
            while not self.stopping:
                self._again.clear()
                started = self._start_due()
                total += started
                with self._cv:
                    if not started and not self._inflight and not self._again.is_set():
                        break
                    if not started and not self._again.is_set():
                        # Every slot is busy, or each case with due rows is at PER_CASE, or
                        # nothing is due: wait for a delivery to end (or a kick).
                        self._cv.wait(timeout=1.0)
        finally:
            self._lock.release()
        return total

    def _due(self) -> list[dict[str, Any]]:
        """Due rows in round-robin order: each case's oldest, then each case's second..."""
        with self.svc.store.read() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    "SELECT id, key, case_id, channel, target, payload, attempts FROM ("
                    " SELECT *, row_number()"
                    " OVER (PARTITION BY case_id, channel = 'peer' ORDER BY id) AS rn"
                    " FROM outbox INDEXED BY outbox_due"
                    " WHERE delivered IS NULL AND failed IS NULL AND next_attempt <= ?)"
                    " WHERE rn <= ? ORDER BY rn, id",
                    (time.time(), BATCH),
                )
            ]

    def _start_due(self) -> int:
        started = 0
        rows = self._due()
        with self._cv:
            per_case: dict[str, int] = {}
            for case in self._inflight.values():
                per_case[case] = per_case.get(case, 0) + 1
            for row in rows:
                if len(self._inflight) >= WORKERS or self.stopping:
                    break
                case = _lane(row)
                if row["id"] in self._inflight or per_case.get(case, 0) >= PER_CASE:
                    continue
                self._inflight[row["id"]] = case
                per_case[case] = per_case.get(case, 0) + 1
                self._pool.submit(self._run, row)
                started += 1
        return started

    def _run(self, row: dict[str, Any]) -> None:
        try:
            self._deliver(row)
        except Exception:  # pragma: no cover - a bug; the row is retried by the next pass
            log.exception("delivery %s: unexpected error", row["id"])
        finally:
            with self._cv:
                self._inflight.pop(row["id"], None)
                self._cv.notify_all()

    def _deliver(self, row: dict[str, Any]) -> None:
        try:
            self._send(row)
        except Exception as exc:
            # Any failure, expected or not, counts as an attempt with its back-off: a target
            # that raises something unforeseen (a URL that is not valid IDNA raises
            # UnicodeError) must not be retried in a tight loop (review of issue 11).
            if not isinstance(
                exc, (DeliveryError, VeladorError, OSError, smtplib.SMTPException, httpx.HTTPError)
            ):
                log.error("delivery %s: unexpected %s", row["id"], type(exc).__name__)
            attempts = row["attempts"] + 1
            now = time.time()
            failed = now if attempts >= MAX_ATTEMPTS else None
            error = redact_error(str(exc), row["channel"], row["target"])
            log.warning(
                "delivery %s (%s to %s) failed (attempt %d): %s",
                row["id"],
                row["channel"],
                redact_target(row["channel"], row["target"]),
                attempts,
                error,
            )
            with self.svc.store.tx() as conn:
                conn.execute(
                    "UPDATE outbox SET attempts = ?, next_attempt = ?, failed = ?, last_error = ?"
                    " WHERE id = ?",
                    (attempts, now + backoff(attempts), failed, error[:500], row["id"]),
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
            post_webhook(
                self._http,
                row["target"],
                canonical_json(notice),
                {
                    "Content-Type": "application/json",
                    "Velador-Delivery": row["key"],
                    "Velador-Event": notice["body"]["event"],
                },
                self.svc.config.webhook_timeout,
                self.proxy,
            )
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
