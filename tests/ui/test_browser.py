"""The reporter's story in a real headless Chromium (Debian `chromium` + `chromium-driver`,
driven by Selenium) against real `velador node serve` processes on loopback.

One browser session serves every test of this module (starting Chromium is the slow part);
each test gets its own `velador ui` server, so its own origin and cookie jar.

Set VELADOR_SCREENSHOTS=docs/screenshots to save the main pages at 360 px and 1280 px wide
(docs/guide-reporter.es.md shows them); a normal run writes nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.ui.conftest import PW, serving

SHOTS = os.environ.get("VELADOR_SCREENSHOTS")
OUTLET_PW = "outlet passphrase"


@pytest.fixture(scope="module")
def driver():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (os.path.exists(chromium) and os.path.exists(chromedriver)):
        pytest.fail("the browser tests need the Debian packages chromium and chromium-driver")
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=es-MX"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1280,900")
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)
    d.set_page_load_timeout(60)
    try:
        yield d
    finally:
        d.quit()


def wait_for(d, test, what: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if test():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; page: {d.current_url}\n{d.page_source}")


class Page:
    """The browser at one `velador ui` server, with the checks every page must pass."""

    def __init__(self, d, srv) -> None:
        self.d, self.srv, self.urls = d, srv, []

    def go(self, path: str) -> None:
        self.d.get(self.srv.base + path)
        self.seen()

    def seen(self) -> None:
        self.urls.append(self.d.current_url)
        unlabelled = self.d.execute_script(
            """return [...document.querySelectorAll('input,select,textarea,button,meter,progress')]
              .filter(e => e.type !== 'hidden')
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                        && !e.getAttribute('aria-labelledby')
                        && !(e.tagName === 'BUTTON' && e.textContent.trim()))
              .map(e => e.outerHTML)"""
        )
        assert not unlabelled, unlabelled

    def fill(self, field_id: str, text: str) -> None:
        el = self.d.find_element("id", field_id)
        el.clear()
        el.send_keys(text)

    def submit(self, selector: str) -> None:
        """Click a form's button and wait for the next page (every form posts and redirects)."""
        self.d.execute_script("window.__veladorOld = 1")
        self.d.find_element("css selector", selector).click()
        wait_for(
            self.d,
            lambda: self.d.execute_script(
                "return !window.__veladorOld && document.readyState === 'complete'"
            ),
            f"the page after {selector}",
        )
        self.seen()

    def text(self) -> str:
        return self.d.execute_script("return document.body ? document.body.innerText : ''")

    def shot(self, name: str) -> None:
        if not SHOTS:
            return
        folder = Path(SHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        for width in (360, 1280):
            metrics = {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}
            self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            height = self.d.execute_script("return document.documentElement.scrollHeight")
            metrics["height"] = max(640, min(int(height), 4000))
            self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            self.d.save_screenshot(str(folder / f"{name}-{width}.png"))
        self.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_reporter_story_in_the_browser(driver, v, nodes, clock, tmp_path, mexico_time):
    """Create an identity, add partners, create a case, deposit a folder, check in."""
    outlet = tmp_path / "outlet"
    v.ok(outlet, "id", "new", "--name", "Diario del Sur", "--role", "outlet", passphrase=OUTLET_PW)
    outlet_card = v.ok(outlet, "id", "card", passphrase=OUTLET_PW).strip()
    node_cards, running = [], []
    for i in range(3):
        node = nodes(f"node-{chr(97 + i)}")
        running.append(node)
        node_cards.append(v.ok(outlet, "node", "card", "--data", node.dir, passphrase=None).strip())
        v.ok(outlet, "contact", "add", node_cards[-1], "--alias", f"nodo{i + 1}", passphrase=None)
    work = tmp_path / "investigacion"
    (work / "notas").mkdir(parents=True)
    (work / "notas" / "fuentes.txt").write_text("entrevista con la fuente A\n" * 200)
    (work / "contratos.csv").write_bytes(os.urandom(300_000))

    with serving(tmp_path / "reporter", clock) as srv:
        p = Page(driver, srv)
        started = time.monotonic()
        driver.get(srv.ui.url())
        p.seen()
        assert "/welcome" in driver.current_url
        assert "Te damos la bienvenida" in p.text()
        p.fill("name", "Rita Reportera")
        p.fill("passphrase", PW)
        wait_for(driver, lambda: "uerte" in p.text(), "the strength meter")
        p.fill("passphrase2", PW)
        p.shot("identidad")
        p.submit("#welcome button[type=submit]")
        assert "Tu identidad está lista" in p.text()

        for alias, card in [("sur", outlet_card)] + [
            (f"n{i + 1}", c) for i, c in enumerate(node_cards)
        ]:
            p.fill("card", card)
            p.fill("alias", alias)
            p.submit("form[action='/contacts/add'] button")
            assert f"Agregaste a {alias}" in p.text()
        assert driver.find_element("css selector", ".fingerprint").text.count("-") == 3
        qr = driver.execute_script(
            "const i = document.querySelector('img.qr'); return i.complete && i.naturalWidth"
        )
        assert qr and qr > 50  # the QR code loaded (from this server, as SVG)
        p.shot("contactos")

        p.go("/cases/new")
        p.fill("name", "inv")
        p.fill("threshold", "2")
        p.shot("caso-nuevo")
        p.submit("button[value=review]")
        assert "Resumen del caso inv" in p.text()
        assert "2 de ellos deben estar de acuerdo" in p.text()
        p.shot("caso-resumen")
        p.submit("button[value=create]")
        assert "El caso inv está activo en los 3 nodos" in p.text()

        assert "/deposit" in driver.current_url
        p.fill("path", str(work))
        p.submit("form[action='/deposit'] button")
        wait_for(driver, lambda: "Listo: 2 archivos" in p.text(), "the deposit")
        p.seen()
        p.shot("deposito")

        p.go("/")
        assert "Próximo plazo" in p.text()
        assert "CST" in driver.find_element("css selector", ".deadline").text  # local time
        p.submit("#checkin")
        assert "Listo, te reportaste" in p.text()
        assert "inv: lo recibieron 3 de 3 nodos" in p.text()
        assert p.text().count("vigilando") == 3
        p.shot("reportarme")
        p.go("/cases/inv")
        assert "Último depósito" in p.text()
        p.shot("caso")

        # No secret in a URL, in the browser's storage or readable cookies.
        storage = driver.execute_script(
            "return [localStorage.length, sessionStorage.length, document.cookie]"
        )
        assert storage == [0, 0, ""]
        assert driver.get_cookies()[0]["httpOnly"] is True
        assert driver.get_cookies()[0]["sameSite"] == "Strict"
        for u in p.urls:
            assert "caballo" not in u and "passphrase" not in u
        assert not [u for u in p.urls if "token=" in u]  # the token left the address at once
        log = "\n".join(srv.log.lines)
        assert "caballo" not in log and "token" not in log
        print(f"browser story: {time.monotonic() - started:.1f} s")

        # The same check-in from the keyboard only: lock, unlock by typing, tab to the button.
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        p.go("/")
        # (a bare click returns before the redirect is followed: submit waits for the next page;
        # the clean-clone run of session 8 read the old address once)
        p.submit("form[action='/lock'] button")
        assert "/unlock" in driver.current_url
        p.shot("desbloquear")
        active = driver.switch_to.active_element
        assert active.get_attribute("id") == "passphrase"  # focus is where typing starts
        active.send_keys(PW + Keys.ENTER)
        wait_for(driver, lambda: driver.current_url.rstrip("/") == srv.base, "unlocked home")
        for _ in range(30):
            ActionChains(driver).send_keys(Keys.TAB).perform()
            if driver.switch_to.active_element.get_attribute("id") == "checkin":
                break
        else:
            raise AssertionError("the check-in button cannot be reached with Tab")
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        wait_for(driver, lambda: "Listo, te reportaste" in p.text(), "keyboard check-in")
        p.go("/cases/inv")
        case_card = driver.find_element("id", "casecard").get_attribute("value").strip()
        case_id = srv.ui.state.case("inv").case_id

    # Silence: after the deadline and the grace period the nodes release; the outlet recovers
    # byte-identical files in the browser.
    clock.advance(3 * 86400 + 86400 + 1)
    for node in running:
        node.wait_state(case_id, "RELEASED")
    with serving(outlet, clock) as srv:
        p = Page(driver, srv)
        driver.get(srv.ui.url())
        driver.switch_to.active_element.send_keys(OUTLET_PW)
        p.submit("form[action='/unlock'] button")
        assert "/outlet" in driver.current_url
        p.submit("form[action='/outlet/inbox'] button")
        assert driver.find_elements("css selector", ".events li.bad")  # the release, in red
        p.fill("case", case_card)
        p.fill("out", str(tmp_path / "recuperado"))
        p.shot("buzon")
        p.submit("form[action='/outlet/recover'] button")
        wait_for(driver, lambda: "Recuperaste 2 archivos" in p.text(), "the recovery")
        assert "Firmado por Rita Reportera" in p.text()
        p.seen()
        p.shot("recuperado")
    got = tmp_path / "recuperado" / "investigacion"
    for f in ("notas/fuentes.txt", "contratos.csv"):
        assert (got / f).read_bytes() == (work / f).read_bytes(), f


# --- an editor asks, the reporter objects; duress looks normal -------------------------------

PAGES = ("/", "/cases/inv", "/contacts", "/deposit", "/cases/new")
REASON = "Detenida en Culiacán desde el martes; su teléfono está apagado"


def _pages_after_checkin(home, clock, passphrase: str) -> dict[str, str]:
    import re

    from tests.ui.conftest import opened

    with serving(home, clock) as srv:
        c = opened(srv)
        assert c.post("/unlock", data={"passphrase": passphrase}).headers["location"] == "/"
        r = c.post("/checkin", follow_redirects=True)
        assert "lo recibieron 3 de 3 nodos" in r.text
        out = {"/checkin": r.text}
        c.post("/cases/inv/status")
        for path in PAGES:
            out[path] = c.get(path).text
    return {k: re.sub(r"127\.0\.0\.1:\d+", "HOST", t) for k, t in out.items()}


def test_editor_asks_reporter_objects_duress_looks_normal(driver, armed, v, clock, mexico_time):
    from tests.e2e.conftest import DURESS, EPW
    from tests.e2e.conftest import PW as REPORTER_PW

    # Duress behaves as in the CLI: the same check-in, and pages no one can tell apart.
    normal = _pages_after_checkin(armed.r, clock, REPORTER_PW)
    duress = _pages_after_checkin(armed.r, clock, DURESS)
    for path, page in normal.items():
        assert duress[path] == page, path

    case_card = v.ok(armed.r, "case", "card", "inv").strip()
    with serving(armed.editors[0], clock) as srv:
        p = Page(driver, srv)
        driver.get(srv.ui.url())
        p.seen()
        driver.switch_to.active_element.send_keys(EPW)
        p.submit("form[action='/unlock'] button")
        assert "/editor" in driver.current_url
        p.fill("req-case", case_card)
        p.fill("reason", REASON)
        driver.find_element("css selector", "input[name=confirm]").click()
        p.shot("editor")
        p.submit("form[action='/editor/request'] button")
        assert "Tu solicitud llegó a los 3 nodos" in p.text()
        assert "1 de 2 editores han pedido" in p.text()
        storage = driver.execute_script(
            "return [localStorage.length, sessionStorage.length, document.cookie]"
        )
        assert storage == [0, 0, ""]
        assert not [u for u in p.urls if "Culiac" in u or "reason" in u]
        assert "Culiac" not in "\n".join(srv.log.lines)
    editor2 = armed.editors[1]
    v.ok(editor2, "release", "request", case_card, "--reason", "x", "--yes", passphrase=EPW)

    with serving(armed.r, clock) as srv:
        p = Page(driver, srv)
        driver.get(srv.ui.url())
        driver.switch_to.active_element.send_keys(REPORTER_PW)
        p.submit("form[action='/unlock'] button")
        p.go("/cases/inv")
        p.submit("form[action='/cases/inv/status'] button")
        assert "Tus editores pidieron liberar el caso (2 de 2)" in p.text()
        p.shot("objetar")
        p.submit("button[value=object]")
        assert "Tu objeción llegó a 3 de 3 nodos" in p.text()
        p.submit("form[action='/cases/inv/status'] button")
        assert "Tus editores pidieron liberar" not in p.text()
        # Pause, resume and audit: the CLI's calls, one click each.
        p.fill("until", "3d")
        p.submit("button[value=pause]")
        assert "En pausa en 3 de 3 nodos" in p.text()
        p.submit("button[value=resume]")
        assert "Reanudado en 3 de 3 nodos" in p.text()
        p.submit("form[action='/cases/inv/audit'] button")
        assert "No: tus destinatarios no podrían recuperar todo" in p.text()  # nothing deposited
