"""Duress in the browser app behaves as in the CLI: the duress passphrase unlocks, checks in
through the same vault call, and no page tells it apart from the normal one
(docs/threat-model.md, "Duress")."""

from __future__ import annotations

import re

from tests.e2e.conftest import (  # noqa: F401 - fixtures
    DURESS,
    PW,
    _node_processes,
    armed,
    clock,
    mexico_time,
    net,
    nodes,
    people,
    smtp,
    v,
    webhooks,
)
from tests.ui.conftest import opened, serve

PAGES = ("/", "/cases/inv", "/contacts", "/deposit", "/cases/new")


def _pages_after_checkin(home, clock, passphrase: str) -> dict[str, str]:
    for srv in serve(home, clock):
        c = opened(srv)
        assert c.post("/unlock", data={"passphrase": passphrase}).headers["location"] == "/"
        r = c.post("/checkin", follow_redirects=True)
        assert "lo recibieron 3 de 3 nodos" in r.text
        out = {"/checkin": r.text}
        c.post("/cases/inv/status")
        for path in PAGES:
            out[path] = c.get(path).text
        # the same page under the same clock, whatever server port it came from
        return {k: re.sub(r"127\.0\.0\.1:\d+", "HOST", t) for k, t in out.items()}
    raise AssertionError("unreachable")


def test_duress_pages_are_the_normal_pages(armed, clock, mexico_time):
    normal = _pages_after_checkin(armed.r, clock, PW)
    duress = _pages_after_checkin(armed.r, clock, DURESS)
    for path, page in normal.items():
        assert duress[path] == page, path
    assert "vigilando" in normal["/"]
