"""What keeps `velador ui` for the person at this laptop alone (docs/threat-model.md, "The
local browser app").

The shape is Jupyter Server's and Syncthing's (style guide, "A local web app..."):

- The server listens on 127.0.0.1 only. Another site's page can still make the browser send
  requests there, so:
- Host must be exactly `127.0.0.1:PORT`: a DNS-rebinding page reaches us under its own name.
- Origin must be exactly `http://127.0.0.1:PORT` on every state-changing request (CSRF). A
  request without Origin is refused too: Chromium and Firefox send it on every POST.
- The browser is opened at a URL with a one-time token. The first request that shows it gets a
  session cookie (HttpOnly, SameSite=Strict) and the token is spent: a copy of the URL in the
  browser's history or a screen recording opens nothing.
- The identity is unlocked inside this process, for this session, from a passphrase posted in
  a form body; the passphrase itself is dropped at once. After `idle` seconds without a request
  the identity is dropped too (locked), and the page asks for the passphrase again.
- Every answer carries a strict Content-Security-Policy (no inline script, nothing from outside
  this machine), no-store caching and no Referer.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from vault.clock import Clock
from vault.identity import Identity

COOKIE = "velador_session"
TOKEN_PARAM = "token"  # noqa: S105 - the name of a query parameter
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_IDLE = 10 * 60
"""Seconds without a request after which the identity is locked again."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # "same-origin", not "no-referrer": under no-referrer Chromium sends `Origin: null` on form
    # posts, and the Origin check could not tell our own forms from another site's.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass
class Session:
    """One browser's session. Only this process holds it (the cookie is a random key to it)."""

    sid: str
    last_seen: int
    identity: Identity | None = None
    notices: list[tuple[str, str]] = field(default_factory=list)
    """(kind, text) shown once on the next page: 'ok', 'error' or 'info'."""
    data: dict[str, Any] = field(default_factory=dict)
    """Per-session page state (the last check-in's results, a case being created)."""

    def notice(self, kind: str, text: str) -> None:
        self.notices.append((kind, text))

    def take_notices(self) -> list[tuple[str, str]]:
        out, self.notices = self.notices, []
        return out


class Sessions:
    """The one-time token and the sessions it opened, with the idle lock on an injected clock."""

    def __init__(self, clock: Clock, idle: int = DEFAULT_IDLE, token: str | None = None) -> None:
        self.clock = clock
        self.idle = idle
        self._token: str | None = token or secrets.token_urlsafe(32)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    @property
    def token(self) -> str | None:
        """The token not yet spent (None after the first use)."""
        return self._token

    def open(self, token: str | None) -> Session | None:
        """Spend the one-time token: a new session when it matches, else None."""
        with self._lock:
            good = self._token
            if not token or good is None:
                return None
            if not hmac.compare_digest(token.encode(), good.encode()):
                return None
            self._token = None
            sess = Session(secrets.token_urlsafe(32), self.clock.now())
            self._sessions[sess.sid] = sess
            return sess

    def get(self, sid: str | None) -> Session | None:
        """The session of this cookie, touched; its identity is dropped first if it sat idle."""
        if not sid:
            return None
        with self._lock:
            sess = None
            for key, value in self._sessions.items():
                if hmac.compare_digest(key.encode(), sid.encode()):
                    sess = value
            if sess is None:
                return None
            now = self.clock.now()
            if sess.identity is not None and now - sess.last_seen > self.idle:
                sess.identity = None
                sess.data.clear()
                sess.data["locked_idle"] = True
            sess.last_seen = now
            return sess


def host_ok(host: str | None, port: int) -> bool:
    """Only the exact name:port the browser was sent to (DNS rebinding defence)."""
    return host is not None and hmac.compare_digest(host.encode(), f"127.0.0.1:{port}".encode())


def origin_ok(origin: str | None, port: int) -> bool:
    """Only this server's own origin (CSRF defence); a missing Origin is refused."""
    return origin is not None and hmac.compare_digest(
        origin.encode(), f"http://127.0.0.1:{port}".encode()
    )
