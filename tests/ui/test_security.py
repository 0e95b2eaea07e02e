"""`velador ui` refuses what another site, another user or a stale tab could do
(cli/ui/security.py; docs/threat-model.md, "The local browser app")."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from cli.ui import security
from tests.ui.conftest import PW, browser, opened, with_identity

UI = Path(__file__).resolve().parents[2] / "cli" / "ui"


def test_no_token_no_page(ui):
    # Given a running app, when a client without the link asks for a page, it is refused.
    c = browser(ui)
    assert c.get("/").status_code == 401
    assert c.get("/contacts").status_code == 401
    assert c.get("/open").status_code == 403
    assert c.get("/open?token=not-the-token").status_code == 403
    # and a wrong guess does not spend the real token
    assert opened(ui).get("/").status_code in (200, 303)


def test_token_opens_once_and_sets_a_strict_cookie(ui):
    token = ui.ui.sessions.token
    c = browser(ui)
    r = c.get(f"/open?token={token}")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert token not in r.headers["set-cookie"]  # the session key is not the token
    # the same link in another browser (history, a screen recording): refused
    again = browser(ui).get(f"/open?token={token}")
    assert again.status_code == 403
    assert browser(ui).get("/").status_code == 401
    assert c.get("/welcome").status_code == 200  # the first browser keeps its session


def test_wrong_host_is_refused(ui):
    c = opened(ui)
    for host in ("evil.example", f"evil.example:{ui.port}", f"localhost:{ui.port}", "127.0.0.1"):
        r = c.get("/welcome", headers={"host": host})
        assert r.status_code == 421, host
        assert "Velador" not in r.text  # no page, no data
    assert c.get("/welcome").status_code == 200


def test_cross_origin_post_is_refused(ui):
    c = opened(ui)
    form = {"name": "Rita", "role": "reporter", "passphrase": PW, "passphrase2": PW}
    for origin in ("http://evil.example", f"http://localhost:{ui.port}", "null"):
        r = c.post("/welcome", data=form, headers={"origin": origin})
        assert r.status_code == 403, origin
    # no Origin at all (browsers always send one on POST): refused too
    bare = httpx.Client(base_url=ui.base, cookies=c.cookies)
    ui.clients.append(bare)
    assert bare.post("/welcome", data=form).status_code == 403
    assert not ui.ui.has_identity()  # nothing was made
    assert c.post("/welcome", data=form).status_code == 303
    assert ui.ui.has_identity()


def test_idle_session_locks_and_refuses_actions(ui):
    c = with_identity(ui)
    assert c.get("/").status_code == 200
    ui.clock.advance(security.DEFAULT_IDLE + 1)
    # Then the identity is dropped: pages ask for the passphrase, actions do nothing.
    r = c.post("/contacts/add", data={"card": "x", "alias": "y"})
    assert r.status_code == 303 and r.headers["location"] == "/unlock"
    r = c.get("/")
    assert r.headers["location"] == "/unlock"
    page = c.get("/unlock").text
    assert "bloqueó" in page  # says why, in Spanish
    assert c.post("/unlock", data={"passphrase": "wrong " + PW}).headers["location"] == "/unlock"
    assert c.get("/").headers["location"] == "/unlock"
    assert c.post("/unlock", data={"passphrase": PW}).headers["location"] == "/"
    assert c.get("/").status_code == 200


def test_activity_keeps_the_session_unlocked(ui):
    c = with_identity(ui)
    for _ in range(3):
        ui.clock.advance(security.DEFAULT_IDLE - 5)
        assert c.get("/").status_code == 200


def test_headers_and_no_outside_resources(ui):
    c = opened(ui)
    for path in ("/", "/welcome", "/static/style.css", "/static/app.js"):
        r = c.get(path, follow_redirects=True)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-store"
    for f in [*UI.glob("templates/*.html"), *UI.glob("static/*")]:
        text = f.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", text), f  # no inline script
        assert not re.search(r"\son[a-z]+=", text), f  # no inline event handlers
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), f  # no other host


def test_no_secret_in_urls_or_log(ui):
    c = with_identity(ui)
    token_log = "\n".join(ui.log.lines)
    c.post("/lock")
    r = c.post("/unlock", data={"passphrase": PW})
    c.post("/strength", data={"passphrase": PW})
    urls = [str(h.url) for h in r.history] + [r.headers.get("location", "")]
    log = "\n".join(ui.log.lines)
    assert "POST /unlock 303" in log  # the log is on, and has paths only
    for secret in (PW, "caballo", "grapa"):
        assert secret not in log and secret not in token_log
        assert not any(secret in u for u in urls)
    assert "token=" not in log and "?" not in log


def test_english_too(ui):
    # Spanish first; the button at the top switches every page to English (same catalogs).
    c = opened(ui)
    assert "Te damos la bienvenida" in c.get("/welcome").text
    r = c.post("/lang", data={"lang": "en", "back": "/welcome"}, follow_redirects=True)
    assert "Welcome to Velador" in r.text and 'lang="en"' in r.text
    r = c.post("/lang", data={"lang": "es", "back": "//evil.example/"})
    assert r.headers["location"] == "/"  # never a redirect off this server
