"""Rotate, drill and destroy in `velador ui` (cli/ui/case_admin.py) against three real
`velador node serve` processes on loopback: each only after the CLI's question, with the same
vault calls and the same words as the CLI, and nothing that tells a duress session apart.

The checks that need no browser speak HTTP to the real app (tests/ui/conftest.py); one Chromium
session then walks the same pages from the keyboard and takes the screenshots
(VELADOR_SCREENSHOTS=docs/screenshots, see tests/ui/test_browser.py).
"""

from __future__ import annotations

import html
import re
import time
from typing import Any

from tests.e2e.conftest import DURESS, OPW
from tests.e2e.conftest import PW as REPORTER_PW
from tests.ui.conftest import opened, serving
from tests.ui.test_browser import Page, driver, wait_for  # noqa: F401 - the module's Chromium
from vault.state import LocalState

EVIL = "http://evil.example"


def unlocked(srv: Any, passphrase: str) -> Any:
    c = opened(srv)
    assert c.post("/unlock", data={"passphrase": passphrase}).headers["location"] == "/"
    return c


def confirm_value(page: str) -> str:
    found = re.search(r'name="confirm" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def text(page: str) -> str:
    """A page's visible words, whitespace collapsed (to compare with the CLI's lines)."""
    body = re.sub(r"(?s)<(script|style|head)\b.*?</\1>", " ", page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def masked(page: str) -> str:
    """A page minus the values that differ between any two runs (port, one-time value, policy
    hashes and the case card that holds one, ids, the job's URL): what a person reads."""
    page = re.sub(r"127\.0\.0\.1:\d+", "HOST", page)
    page = re.sub(r'name="confirm" value="[^"]+"', 'name="confirm" value="X"', page)
    page = re.sub(r"velador:case:v1:[A-Za-z0-9_=-]+", "CASE-CARD", page)
    page = re.sub(r"/rotated/[A-Za-z0-9_-]+", "/rotated/JOB", page)
    return re.sub(r"[0-9a-f]{12,}", "HEX", page)


def rotated(c: Any, response: Any) -> str:
    """Follow a confirmed rotation to its result page (it runs in the background)."""
    location = response.headers["location"]
    assert location.startswith("/cases/") and "/rotated/" in location, location
    end = time.monotonic() + 60
    while 'data-state="running"' in (page := c.get(location).text):
        assert time.monotonic() < end, "the rotation did not finish"
        time.sleep(0.1)
    return page


def policy_at_nodes(armed: Any) -> list[str]:
    return [
        n.query("SELECT policy_hash FROM cases WHERE case_id = ?", armed.case_id)[0][0]
        for n in armed.nodes
    ]


def local_policy(armed: Any) -> str:
    return LocalState(armed.r).case("inv").policy.hash


def test_rotate_and_destroy_only_after_the_question(armed, clock, mexico_time):
    seen: dict[str, list[str]] = {}
    for passphrase in (REPORTER_PW, DURESS):
        before = local_policy(armed)
        assert policy_at_nodes(armed) == [before] * 3
        with serving(armed.r, clock) as srv:
            c = unlocked(srv, passphrase)
            # Given the case page, its rotate button only asks the CLI's question
            case_page = c.get("/cases/inv").text
            assert 'action="/cases/inv/rotate"' in case_page
            asked = c.post("/cases/inv/rotate")
            assert asked.status_code == 200
            assert "¿De verdad quieres cambiar la llave del caso inv?" in text(asked.text), (
                asked.text
            )
            assert "Lo que no hace" in asked.text
            # A made-up answer, or a "yes" without the page's value: the question again
            again = c.post("/cases/inv/rotate", data={"confirm": "yes"})
            assert again.status_code == 200 and "¿De verdad" in text(again.text)
            value = confirm_value(again.text)
            # The page's value, posted by another site: refused before anything runs
            for path in ("rotate", "destroy", "drill", "arm"):
                r = c.post(f"/cases/inv/{path}", data={"confirm": value}, headers={"origin": EVIL})
                assert r.status_code == 403, path
            assert local_policy(armed) == before and policy_at_nodes(armed) == [before] * 3
            # When the person confirms on the page, the case is rotated at every node
            result = rotated(c, c.post("/cases/inv/rotate", data={"confirm": value}))
            new = LocalState(armed.r).case("inv").policy
            assert new.replaces == before and new.hash != before
            if passphrase == REPORTER_PW:
                assert policy_at_nodes(armed) == [new.hash] * 3
            else:
                # As `velador case rotate` under duress (protocol.md §4.4): the nodes answer
                # from a cover state, keep the real policy and alert the editors.
                assert policy_at_nodes(armed) == [before] * 3
                for n in armed.nodes:
                    q = "SELECT duress_at FROM cases WHERE case_id = ?"
                    assert n.query(q, armed.case_id)[0][0] is not None
            assert f"tiene llave nueva (política {new.hash[:16]})" in text(result)
            assert text(result).count("registrado") == 3
            assert "quedó activo en los 3 nodos" in text(result)
            # The same answer twice (a double click, a reload) does not rotate again
            twice = c.post("/cases/inv/rotate", data={"confirm": value})
            assert twice.status_code == 200 and "¿De verdad" in text(twice.text)
            assert local_policy(armed) == new.hash
            seen[passphrase] = [masked(case_page), masked(asked.text), masked(result)]
    # Duress: the same pages, word for word, as under the normal passphrase
    assert seen[DURESS] == seen[REPORTER_PW]

    with serving(armed.r, clock) as srv:
        c = unlocked(srv, REPORTER_PW)
        # A rotation that misses a node says so, and "Finish the rotation" is `case arm`
        down = armed.nodes[2]
        down.stop()
        value = confirm_value(c.post("/cases/inv/rotate").text)
        result = text(rotated(c, c.post("/cases/inv/rotate", data={"confirm": value})))
        assert "tiene la llave nueva en 2 de 3 nodos" in result, result
        assert "Terminar el cambio de llave" in result
        down.start()
        r = c.post("/cases/inv/arm", follow_redirects=True)
        assert "quedó activo en los 3 nodos" in text(r.text)
        assert policy_at_nodes(armed) == [local_policy(armed)] * 3

        asked = c.post("/cases/inv/destroy")
        assert "¿De verdad quieres destruir el caso inv en todos los nodos?" in text(asked.text)
        assert c.post("/cases/inv/destroy", data={"confirm": "yes"}).status_code == 200
        assert all(n.state(armed.case_id) == "ARMED" for n in armed.nodes)
        value = confirm_value(c.post("/cases/inv/destroy").text)
        r = c.post("/cases/inv/destroy", data={"confirm": value}, follow_redirects=True)
        assert "El caso inv quedó destruido en todos los nodos" in text(r.text), text(r.text)
        assert {n.state(armed.case_id) for n in armed.nodes} == {"DESTROYED"}


def test_drill_report_says_what_the_cli_says(armed, v, clock, mexico_time):
    card = v.ok(armed.r, "case", "card", "inv").strip()
    pages = {}
    for passphrase in (REPORTER_PW, DURESS):
        with serving(armed.r, clock) as srv:
            c = unlocked(srv, passphrase)
            intro = c.post("/cases/inv/drill", follow_redirects=True).text
            assert "Nada se libera" in text(intro)
            if passphrase == REPORTER_PW:
                r = c.post("/cases/inv/drill", data={"step": "start"}, follow_redirects=True)
                assert "iniciado en 3 de 3 nodos" in text(r.text), text(r.text)
            r = c.post("/cases/inv/drill", data={"step": "report"}, follow_redirects=True)
            assert "Una liberación ahora llegaría a 0 de 2 destinatarios" in text(r.text)
            pages[passphrase] = [masked(intro), masked(r.text)]
    # Duress: the same pages (the drill's report, word for word)
    assert pages[DURESS] == pages[REPORTER_PW]

    # One recipient answers the newest drill; the other does not (yet)
    v.ok(armed.outlets[0], "drill", "answer", card, passphrase=OPW)
    with serving(armed.r, clock) as srv:
        c = unlocked(srv, REPORTER_PW)
        page = text(c.post("/cases/inv/drill", data={"step": "report"}, follow_redirects=True).text)
        code, out, err = v(armed.r, "--lang", "es", "drill", "report", "inv")
    assert code != 0 and "Traceback" not in err
    assert "Una liberación ahora llegaría a 1 de 2 destinatarios" in page, page
    # Every line `velador drill report` prints is on the page, in the same words
    lines = [" ".join(line.split()) for line in out.splitlines() if line.strip()]
    assert len(lines) >= 5
    for line in lines:
        assert line in page, line
    error = err.splitlines()[0].removeprefix("velador: error: ")
    assert error in page


def tab_to(d: Any, test: Any, what: str) -> None:
    """Press Tab until `test(active element)`; fail if it cannot be reached from the keyboard."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    for _ in range(40):
        ActionChains(d).send_keys(Keys.TAB).perform()
        if test(d.switch_to.active_element):
            return
    raise AssertionError(f"{what} cannot be reached with Tab")


def press_enter(d: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    d.execute_script("window.__veladorOld = 1")
    ActionChains(d).send_keys(Keys.ENTER).perform()
    wait_for(
        d,
        lambda: d.execute_script(
            "return !window.__veladorOld && document.readyState === 'complete'"
        ),
        "the next page",
    )


def test_drill_and_rotate_from_the_keyboard(driver, armed, clock, mexico_time):  # noqa: F811
    def button(label: str) -> Any:
        return lambda el: el.tag_name == "button" and el.text.strip() == label

    with serving(armed.r, clock) as srv:
        p = Page(driver, srv)
        driver.get(srv.ui.url())
        driver.switch_to.active_element.send_keys(REPORTER_PW)
        p.submit("form[action='/unlock'] button")
        p.go("/cases/inv")
        # The drill: button, start, report; every control labelled (Page.seen), keys only
        tab_to(driver, button("Simulacro"), "the drill button")
        press_enter(driver)
        p.seen()
        tab_to(driver, button("Iniciar un simulacro"), "the start button")
        press_enter(driver)
        p.seen()
        assert "iniciado en 3 de 3 nodos" in p.text()
        tab_to(driver, button("Ver quién respondió"), "the report button")
        press_enter(driver)
        p.seen()
        assert "Una liberación ahora llegaría a 0 de 2 destinatarios" in p.text()
        p.shot("simulacro")
        # Rotate: the question, then yes, from the keyboard
        before = local_policy(armed)
        p.go("/cases/inv")
        tab_to(driver, button("Cambiar la llave"), "the rotate button")
        press_enter(driver)
        p.seen()
        assert "¿De verdad quieres cambiar la llave del caso inv?" in p.text()
        p.shot("rotar")
        assert local_policy(armed) == before
        tab_to(driver, button("Sí, cambiar la llave"), "the yes button")
        press_enter(driver)
        assert "/cases/inv/rotated/" in driver.current_url
        wait_for(driver, lambda: "quedó activo en los 3 nodos" in p.text(), "the rotation")
        p.seen()
        p.shot("rotada")
        after = local_policy(armed)
        assert after != before and policy_at_nodes(armed) == [after] * 3


def test_rotate_asks_where_the_new_share_files_go(v, homes, clock, tmp_path):
    # Given a case whose shares are offline files (no nodes), as `case create --offline-dir`
    r, outlet = homes("rita"), homes("diario")
    v.ok(r, "id", "new", "--name", "Rita Reportera")
    v.ok(outlet, "id", "new", "--name", "Diario", "--role", "outlet", passphrase=OPW)
    v.ok(r, "contact", "add", v.ok(outlet, "id", "card", passphrase=OPW).strip(), "--alias", "dia")
    args = ["case", "create", "puerto", "--recipient", "dia", "--threshold", "2", "--shares", "3"]
    store = f"file://{tmp_path / 'store'}"
    v.ok(r, *args, "--offline-dir", tmp_path / "usb1", "--store", store)
    with serving(r, clock) as srv:
        c = unlocked(srv, REPORTER_PW)
        # When the reporter rotates in the browser, the question page asks for the folder
        page = c.post("/cases/puerto/rotate").text
        assert 'id="offline_dir"' in page and 'for="offline_dir"' in page
        usb = tmp_path / "usb2"
        form = {"confirm": confirm_value(page), "offline_dir": str(usb)}
        result = text(rotated(c, c.post("/cases/puerto/rotate", data=form)))
    # Then the new share files are there, and the page names each one
    files = sorted(usb.glob("*.velador-share"))
    assert len(files) == 3
    for f in files:
        assert (
            f"Archivo de fragmento nuevo: {f}. Destruye los archivos de fragmentos viejos."
            in result
        )
    assert LocalState(r).case("puerto").policy.replaces
