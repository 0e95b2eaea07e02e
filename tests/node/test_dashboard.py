"""The operator's dashboard (issue 15, "Node dashboard"; escrow_node/dashboard.py).

Read-only, on its own loopback listener and never on the API port; no case id on the page;
refuses a foreign Host (DNS rebinding) and any method but GET; no script at all. Most tests run
the node in process (the page is a view of its database); one starts a real `velador node serve`
to prove the listener comes up with the node.
"""

from __future__ import annotations

import json

import httpx
import pytest

from cli import i18n
from escrow_node import admission, audit
from escrow_node.config import RegistrationConfig, load_config
from escrow_node.errors import ConfigError
from tests.conftest import free_port
from tests.node.conftest import InprocNode
from vault.errors import PolicyError

CLOSED = RegistrationConfig(mode="closed", allow_private_targets=True)


@pytest.fixture
def board(tmp_path):
    port = free_port()
    n = InprocNode(
        tmp_path, dashboard=True, dashboard_listen=f"127.0.0.1:{port}", registration=CLOSED
    )
    n.board = f"http://127.0.0.1:{port}"
    yield n
    n.stop()


def register(n, w):
    return n.client(w.reporter).register_case(w.policy, w.envs_for(n.card))


def test_the_page_shows_cases_deadlines_and_refused_registrations_but_no_case_id(board, world_for):
    # Given a closed node that refused one reporter and then admitted her
    w = world_for(board.card, every=86400, grace=3600)
    with pytest.raises(PolicyError):
        register(board, w)
    data = httpx.get(board.board + "/dashboard.json").json()
    assert [r["fingerprint"] for r in data["registrations"]] == [w.reporter.fingerprint]
    page = httpx.get(board.board + "/").text
    assert w.reporter.fingerprint in page
    with board.svc.store.tx() as conn:
        admission.admit(conn, w.reporter.fingerprint, board.clock.now())
    register(board, w)
    # Then the page counts her case, shows its deadline, and no longer lists her as waiting
    data = httpx.get(board.board + "/dashboard.json").json()
    assert data["cases"]["ARMED"] == 1
    assert [u["deadline"] for u in data["upcoming"]] == [board.clock.now() + 86400]
    assert data["registrations"] == []
    assert data["audit"]["ok"] is True and data["audit"]["entries"] >= 1
    page = httpx.get(board.board + "/").text
    assert w.policy.case_id not in page and w.policy.case_id not in json.dumps(data)
    assert "No refused registrations." in page
    assert "The audit chain verifies" in page


def test_the_api_port_never_serves_it_and_the_listener_refuses_rebinding_and_writes(board):
    assert httpx.get(board.url + "/dashboard.json").status_code == 404
    # A DNS-rebinding page reaches the port under a name of its own: refused.
    port = board.board.rsplit(":", 1)[1]
    evil = httpx.get(board.board + "/", headers={"Host": f"attacker.example:{port}"})
    assert evil.status_code == 421 and "Velador" not in evil.text
    assert httpx.get(board.board + "/", headers={"Host": f"localhost:{port}"}).status_code == 200
    assert httpx.post(board.board + "/", content=b"x").status_code == 405
    assert httpx.get(board.board + "/nothing").status_code == 404
    r = httpx.get(board.board + "/")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "script" not in csp
    assert "<script" not in r.text
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"


def test_failed_deliveries_show_redacted_addresses_and_a_broken_audit_chain_leads(board):
    # Given a notice the outbox gave up on, whose error quotes the address
    now = board.clock.now()
    with board.svc.store.tx() as conn:
        conn.execute(
            "INSERT INTO outbox (key, case_id, channel, target, payload, created, attempts,"
            " next_attempt, delivered, failed, last_error) VALUES"
            " ('k1', 'c', 'email', 'fuente.segura@example.org', '{}', ?, 9, ?, NULL, ?, ?)",
            (now, now, now, "550 fuente.segura@example.org: no such user"),
        )
        audit.append(conn, now, None, "node_started", {"n": 1})
    page = httpx.get(board.board + "/").text
    assert "fuente.segura" not in page
    assert "f***@example.org" in page and "no such user" in page
    # When someone alters an audit entry
    with board.svc.store.tx() as conn:
        conn.execute("UPDATE audit SET detail = '{\"forged\": 1}' WHERE seq = 1")
    page = httpx.get(board.board + "/").text
    # Then the page says so before anything else, with what to do
    assert "The audit chain is BROKEN at entry 1" in page
    assert page.index("BROKEN") < page.index("<h2>")


def test_the_page_speaks_spanish(board):
    i18n.setup("es")
    try:
        page = httpx.get(board.board + "/").text
    finally:
        i18n.setup("en")
    assert '<html lang="es">' in page
    for word in ("Casos", "Próximos plazos", "Entregas", "Nodos pares", "Registros en espera"):
        assert word in page, word


@pytest.mark.parametrize("listen", ["0.0.0.0:9465", "192.0.2.7:9465", "9465"])
def test_the_listener_must_be_loopback(nodes, listen):
    n = nodes("node-d1", start=False)
    n.configure(dashboard={"enabled": True, "listen": listen})
    with pytest.raises(ConfigError, match=r"\[dashboard\] listen must be a loopback"):
        load_config(n.dir)


@pytest.mark.integration
def test_a_real_node_serves_it_when_enabled_and_not_by_default(nodes):
    port = free_port()
    n = nodes("node-d2", dashboard={"enabled": True, "listen": f"127.0.0.1:{port}"})
    assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    n.stop()
    n.configure(dashboard={"enabled": False, "listen": f"127.0.0.1:{port}"})
    n.start()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert load_config(n.dir).dashboard is False


def _chromium():
    """Headless Debian Chromium via chromedriver; a missing package fails the test, naming it."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    assert browser, "the browser tests need Chromium: install the package 'chromium'"
    assert driver, "the browser tests need chromedriver: install the package 'chromium-driver'"
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.mark.integration
def test_in_a_real_browser_it_fits_a_phone_and_a_desktop_in_spanish(board, world_for, tmp_path):
    # Given a node that refused a registration, showing its page in Spanish
    w = world_for(board.card, every=86400, grace=3600)
    with pytest.raises(PolicyError):
        register(board, w)
    i18n.setup("es")
    browser = _chromium()
    try:
        for width in (360, 1280):
            browser.set_window_size(width, 900)
            browser.get(board.board + "/")
            # Then nothing is wider than the screen (no sideways scrolling on a phone)...
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{overflow}px wider than a {width}px window"
            # ...the page is in Spanish, and the browser ran no script and loaded nothing else
            text = browser.find_element("tag name", "main").text
            assert "Registros en espera" in text and w.reporter.fingerprint in text
            browser.save_screenshot(str(tmp_path / f"dashboard-{width}.png"))
            errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors  # e.g. a CSP violation by the page's own style
    finally:
        browser.quit()
        i18n.setup("en")


def test_drills_show_when_and_how_many_answered(board, world_for):
    from vault import drill as vdrill

    w = world_for(board.card, n_recipients=2, n_editors=1, quorum=1)
    with board.svc.store.tx() as conn:
        admission.admit(conn, w.reporter.fingerprint, board.clock.now())
    register(board, w)
    assert httpx.get(board.board + "/dashboard.json").json()["drills"] == []
    board.client(w.reporter).drill_start(w.policy.case_id, "d1")
    vdrill.answer(w.recipients[0], w.policy.case_id, [board.card], [], board.clock, 10)
    data = httpx.get(board.board + "/dashboard.json").json()
    [d] = data["drills"]
    assert d["started"] == board.clock.now()
    assert (d["recipients_answered"], d["recipients"]) == (1, 2)
    assert (d["editors_answered"], d["editors"]) == (0, 1)
    page = httpx.get(board.board + "/").text
    assert "Outlets answered" in page and "1 of 2" in page and "0 of 1" in page
