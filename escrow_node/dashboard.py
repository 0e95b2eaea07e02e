"""The operator's dashboard: a read-only page on a loopback listener (docs/guide-operator.md §8.2).

Why a separate listener, as for the metrics (docs/threat-model.md, "Finding 3"): whatever
publishes the node's API (a reverse proxy, an onion service) must not publish what the operator
sees. `[dashboard] listen` MUST be a loopback HOST:PORT; it is off by default.

What it shows, and what it never shows:
- cases by state and the next deadlines as counts and times, never a case id (the id names a
  case to anyone holding its card) and never anything sealed;
- the outbox and the failed deliveries, with addresses redacted as in the logs (protocol §8.5);
- each peer node's reachability, from the node's own deliveries to it;
- the newest drills (protocol.md §11): when, and how many of those drilled answered;
- whether the audit chain verifies;
- reporters refused because registration is closed, for the operator to admit (`velador node
  admit FINGERPRINT`) or ignore;
- nothing that moves differently under duress: silent-alarm deliveries are left out of every
  figure, as in the metrics (protocol §8.6), and a case shows the state the engine holds for it.

Hostile browsers: the page is read-only (only GET), answers only when the Host header names the
listener itself (a DNS-rebinding page in the operator's browser cannot read it), and sends a
Content-Security-Policy that allows nothing but its own hashed style sheet: no script at all.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cli.i18n import _, ngettext
from cli.timefmt import when
from vault.errors import N_

from . import audit
from .engine import (
    ARMED,
    DESTROYED,
    DESTROYING,
    EDITOR_PENDING,
    OVERDUE,
    PAUSED,
    RELEASED,
    REMINDED,
    STATES,
    WATCHING,
)
from .errors import ConfigError
from .metrics import _NOT_SILENT
from .outbox import redact_error, redact_target

log = logging.getLogger("velador.node")
DEFAULT_LISTEN = "127.0.0.1:9465"
UPCOMING = 10
FAILED_SHOWN = 20
DRILLS_SHOWN = 10
REFRESH_SECONDS = 30

STATE_NAMES = {
    ARMED: N_("armed"),
    REMINDED: N_("reminded"),
    OVERDUE: N_("overdue"),
    EDITOR_PENDING: N_("editor release pending"),
    PAUSED: N_("paused"),
    DESTROYING: N_("being destroyed"),
    RELEASED: N_("released"),
    DESTROYED: N_("destroyed"),
}
"""Marked here, translated when the page is rendered (the language is the process's)."""


def _state(name: str) -> str:
    return _(STATE_NAMES[name]) if name in STATE_NAMES else name


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` with a loopback HOST; the metrics listener's rule, with this section's name."""
    from .metrics import parse_listen as loopback

    try:
        return loopback(text)
    except ConfigError:
        raise ConfigError(
            f"node.toml: [dashboard] listen must be a loopback HOST:PORT, not {text!r}",
            hint=f"use {DEFAULT_LISTEN}; open it on this machine or through an SSH tunnel",
        ) from None


# The silent-event filter is a constant of the metrics module; nothing here comes from a request.
_PENDING_SQL = f"SELECT channel, count(*) FROM outbox WHERE delivered IS NULL AND failed IS NULL AND {_NOT_SILENT} GROUP BY channel"  # noqa: S608, E501
_FAILED_SQL = f"SELECT channel, target, attempts, failed, last_error FROM outbox WHERE failed IS NOT NULL AND {_NOT_SILENT} ORDER BY failed DESC LIMIT ?"  # noqa: S608, E501


def collect(svc: Any, now: int, is_slow: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Everything the page shows, as plain data (also served as /dashboard.json)."""
    with svc.store.read() as conn:
        counts = dict.fromkeys(STATES, 0)
        for state, n in conn.execute("SELECT state, count(*) FROM cases GROUP BY state"):
            counts[state] = n
        upcoming = [
            {"state": r[0], "deadline": r[1]}
            for r in conn.execute(
                "SELECT state, deadline FROM cases WHERE state IN (?, ?, ?)"
                " ORDER BY deadline LIMIT ?",
                (*WATCHING, UPCOMING),
            )
        ]
        pending = dict(conn.execute(_PENDING_SQL).fetchall())
        failed = [
            {
                "channel": r["channel"],
                "target": redact_target(r["channel"], r["target"]),
                "attempts": r["attempts"],
                "failed": int(r["failed"]),
                "error": redact_error(r["last_error"] or "", r["channel"], r["target"])[:200],
            }
            for r in conn.execute(_FAILED_SQL, (FAILED_SHOWN,))
        ]
        failed_total = conn.execute(
            f"SELECT count(*) FROM outbox WHERE failed IS NOT NULL AND {_NOT_SILENT}"  # noqa: S608
        ).fetchone()[0]
        peers = []
        for r in conn.execute(
            "SELECT target, max(delivered) AS ok, max(failed) AS bad,"
            " sum(delivered IS NULL AND failed IS NULL) AS waiting FROM outbox"
            " WHERE channel = 'peer' GROUP BY target ORDER BY target"
        ):
            last_error = conn.execute(
                "SELECT last_error FROM outbox WHERE channel = 'peer' AND target = ?"
                " AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
                (r["target"],),
            ).fetchone()
            peers.append(
                {
                    "peer": r["target"],
                    "last_ok": int(r["ok"]) if r["ok"] else None,
                    "last_failed": int(r["bad"]) if r["bad"] else None,
                    "waiting": int(r["waiting"] or 0),
                    "slow": bool(is_slow and is_slow(r["target"])),
                    "error": (last_error[0] if last_error else "")[:200],
                }
            )
        drills = [
            {
                "started": r["started"],
                "ends": r["ends"],
                "recipients": r["recipients"] or 0,
                "recipients_answered": r["recipients_answered"] or 0,
                "editors": r["editors"] or 0,
                "editors_answered": r["editors_answered"] or 0,
            }
            for r in conn.execute(
                "SELECT d.started, d.ends, sum(p.role = 'recipient') AS recipients,"
                " sum(p.role = 'recipient' AND p.answered IS NOT NULL) AS recipients_answered,"
                " sum(p.role = 'editor') AS editors,"
                " sum(p.role = 'editor' AND p.answered IS NOT NULL) AS editors_answered"
                " FROM drills d LEFT JOIN drill_parties p"
                " ON p.case_id = d.case_id AND p.drill_id = d.drill_id"
                " GROUP BY d.case_id, d.drill_id ORDER BY d.started DESC LIMIT ?",
                (DRILLS_SHOWN,),
            )
        ]
        chain = audit.verify(conn)
        registrations = [
            r
            for r in svc.registration_requests.items()
            if conn.execute(
                "SELECT 1 FROM admitted WHERE fingerprint = ?", (r["fingerprint"],)
            ).fetchone()
            is None
        ]
    return {
        "now": now,
        "cases": counts,
        "upcoming": upcoming,
        "outbox_pending": pending,
        "outbox_failed": failed_total,
        "failed": failed,
        "peers": peers,
        "audit": {
            "ok": chain.ok,
            "entries": chain.entries,
            "first_bad": chain.first_bad,
            "reason": chain.reason,
        },
        "drills": drills,
        "clock_alarms": len(getattr(svc, "clock_alarms", {}) or {}),
        "registrations": registrations,
    }


STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0;padding:1rem;color:#111;background:#fafafa}
main{max-width:64rem;margin:auto}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top;
overflow-wrap:break-word}
.ok{color:#14532d;font-weight:600}.bad{color:#991b1b;font-weight:600}
.fp{font-family:ui-monospace,monospace}
p.note{color:#444;font-size:.9rem}
@media (max-width:40rem){
thead{position:absolute;left:-10000px}
table,tbody,tr,td{display:block;width:auto}
tr{border:1px solid #ccc;margin-bottom:.6rem;background:#fff}
td{border:0;border-bottom:1px solid #eee;display:grid;grid-template-columns:8.5rem 1fr;gap:.5rem}
td::before{content:attr(data-label);font-weight:600}
}
"""
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src '{STYLE_HASH}'; img-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f"<p>{_e(empty)}</p>"
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    # Each cell carries its column's name: on a phone the rows stack as label/value pairs.
    labels = [_e(h) for h in headers]
    cells = (zip(labels, row, strict=True) for row in rows)
    body = "".join(
        "<tr>" + "".join(f'<td data-label="{h}">{c}</td>' for h, c in row) + "</tr>"
        for row in cells
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _t(text: str, **params: Any) -> str:
    """A sentence already translated (`_t(_("..."), name=...)`), escaped, values filled in."""
    return _e(text % params if params else text)


def _h2(text: str) -> str:
    return f"<h2>{_e(text)}</h2>"


def _span(css: str, text: str) -> str:
    return f'<span class="{css}">{_e(text)}</span>'


def _audit_line(chain: dict[str, Any]) -> str:
    if chain["ok"]:
        n = chain["entries"]
        text = ngettext(
            "The audit chain verifies: %(n)d entry.", "The audit chain verifies: %(n)d entries.", n
        )
        return f'<p class="ok">{_e(text % {"n": n})}</p>'
    broken = _t(
        _("The audit chain is BROKEN at entry %(seq)s: %(reason)s."),
        seq=chain["first_bad"],
        reason=chain["reason"],
    )
    todo = _t(_("Stop the node and restore the database from a backup; see the operator guide."))
    return f'<p class="bad">{broken} {todo}</p>'


def _peer_status(p: dict[str, Any]) -> str:
    if p["slow"]:
        return _span("bad", _("too slow: skipped for a while"))
    if p["last_failed"] and (not p["last_ok"] or p["last_failed"] > p["last_ok"]):
        return _span("bad", _("unreachable"))
    if p["last_ok"]:
        return _span("ok", _("reachable"))
    return _t(_("not tried yet"))


def render(data: dict[str, Any], node_name: str) -> str:
    """The page, in the process's language (cli/i18n.py) and local time zone."""
    now = data["now"]
    title = _t(_("Velador node %(name)s"), name=node_name)
    refresh = _t(_("Read-only. Refreshed every %(seconds)d seconds."), seconds=REFRESH_SECONDS)
    shown = _t(_("Shown at %(time)s."), time=when(now, now))
    parts = [f"<h1>{title}</h1>", f'<p class="note">{refresh} {shown}</p>']
    # Warnings first: they are the operator's next step.
    if not data["audit"]["ok"]:
        parts.append(_audit_line(data["audit"]))
    if data["clock_alarms"]:
        clock = _t(
            _(
                "This node's clock is ahead of its peers for %(n)d case(s): check its time "
                "synchronisation (NTP)."
            ),
            n=data["clock_alarms"],
        )
        parts.append(f'<p class="bad">{clock}</p>')
    parts.append(_h2(_("Cases")))
    rows = [[_e(_state(s)), str(n)] for s, n in data["cases"].items() if n]
    parts.append(_table([_("State"), _("Cases")], rows, _("No cases yet.")))
    parts.append(_h2(_("Next deadlines")))
    rows = [[_e(when(u["deadline"], now)), _e(_state(u["state"]))] for u in data["upcoming"]]
    parts.append(_table([_("Deadline"), _("State")], rows, _("No case is waiting for a check-in.")))
    parts.append(_h2(_("Deliveries")))
    summary = _t(
        _("%(pending)d waiting, %(failed)d given up after every retry."),
        pending=sum(data["outbox_pending"].values()),
        failed=data["outbox_failed"],
    )
    parts.append(f"<p>{summary}</p>")
    rows = [
        [
            _e(f["channel"]),
            _e(f["target"]),
            str(f["attempts"]),
            _e(when(f["failed"], now)),
            _e(f["error"]),
        ]
        for f in data["failed"]
    ]
    headers = [_("Channel"), _("To"), _("Attempts"), _("Given up"), _("Last error")]
    parts.append(_table(headers, rows, _("No failed deliveries.")))
    parts.append(_h2(_("Peer nodes")))
    rows = [
        [
            _e(p["peer"]),
            _peer_status(p),
            _e(when(p["last_ok"], now)),
            str(p["waiting"]),
            _e(p["error"]),
        ]
        for p in data["peers"]
    ]
    headers = [_("Node"), _("Status"), _("Last delivery"), _("Waiting"), _("Last error")]
    parts.append(_table(headers, rows, _("No delivery to another node yet.")))
    parts.append(_h2(_("Drills")))
    rows = [
        [
            _e(when(d["started"], now)),
            _e(when(d["ends"], now)),
            _e(_("%(n)d of %(total)d") % {"n": d["recipients_answered"], "total": d["recipients"]}),
            _e(_("%(n)d of %(total)d") % {"n": d["editors_answered"], "total": d["editors"]}),
        ]
        for d in data["drills"]
    ]
    headers = [_("Started"), _("Answers due by"), _("Outlets answered"), _("Editors answered")]
    parts.append(_table(headers, rows, _("No drills yet.")))
    parts.append(_h2(_("Audit log")))
    parts.append(_audit_line(data["audit"]))
    parts.append(_h2(_("Registrations waiting")))
    note = _t(
        _(
            "Reporters this node refused because registration is closed, since it started. "
            "Admit one with: velador node admit FINGERPRINT"
        )
    )
    parts.append(f'<p class="note">{note}</p>')
    rows = [
        [
            f'<span class="fp">{_e(r["fingerprint"])}</span>',
            _e(when(r["last"], now)),
            str(r["attempts"]),
        ]
        for r in data["registrations"]
    ]
    headers = [_("Fingerprint"), _("Last attempt"), _("Attempts")]
    parts.append(_table(headers, rows, _("No refused registrations.")))
    lang = "es" if _("Cases") != "Cases" else "en"
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f"<title>{title}</title><style>{STYLE}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>"
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "velador-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # nothing about who looked at the page goes to the log

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _host_ok(self) -> bool:
        return (self.headers.get("Host") or "") in self.server.allowed_hosts

    def do_GET(self) -> None:
        if not self._host_ok():
            self._send(421, b"misdirected request\n", "text/plain; charset=utf-8")
            return
        path = self.path.split("?", 1)[0]
        try:
            if path == "/":
                body = render(self.server.snapshot(), self.server.node_name).encode()
                self._send(200, body, "text/html; charset=utf-8")
            elif path == "/dashboard.json":
                body = json.dumps(self.server.snapshot(), sort_keys=True).encode()
                self._send(200, body, "application/json")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
        except Exception:  # a bug must not kill the listener; the operator sees a 500
            log.exception("dashboard: could not render the page")
            self._send(500, b"the dashboard failed; see the node log\n", "text/plain")

    do_HEAD = do_GET

    def _refuse(self) -> None:
        self._send(405, b"read-only\n", "text/plain; charset=utf-8")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allowed_hosts: set[str]
    node_name: str
    snapshot: Callable[[], dict[str, Any]]


class Dashboard:
    """The listener's life: start with the node (`[dashboard] enabled`), stop with it."""

    def __init__(self, svc: Any, is_slow: Callable[[str], bool] | None = None) -> None:
        self.svc = svc
        self.is_slow = is_slow
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def serve(self, listen: str) -> tuple[str, int]:
        host, port = parse_listen(listen)
        server = _Server((host, port), _Handler)
        bound_host, bound_port = server.server_address[0], server.server_address[1]
        names = {str(bound_host), "localhost"}
        if ":" in str(bound_host):
            names = {f"[{bound_host}]", "localhost"}
        server.allowed_hosts = {f"{n}:{bound_port}" for n in names}
        server.node_name = self.svc.config.name
        server.snapshot = lambda: collect(self.svc, self.svc.clock.now(), self.is_slow)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="velador-dashboard", daemon=True
        )
        self._thread.start()
        log.info("dashboard on http://%s:%d/ (loopback only)", bound_host, bound_port)
        return str(bound_host), int(bound_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
