"""Times a person reads are local, with the zone's name (issue 12, "Spanish and local time"):
`case show`, `id show` and `contact show` printed UTC ISO strings; --json keeps UTC.
"""

from __future__ import annotations

import re
import time

import pytest

from .test_cli import Velador
from .test_cli import world as world  # the fixture, shared

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


@pytest.fixture
def v(capsys):
    return Velador(capsys)


@pytest.fixture
def mexico_time(monkeypatch):
    monkeypatch.setenv("TZ", "America/Mexico_City")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_case_id_and_contact_show_print_local_times(v, world, mexico_time):
    v.ok(world.r, "deposit", "inv", world.data)
    for args in (("case", "show", "inv"), ("id", "show"), ("contact", "show", "sur")):
        out = v.ok(world.r, *args)
        assert not ISO.search(out), (args, out)
        assert re.search(
            r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d+ \w{3}( \d{4})? \d\d:\d\d C[SD]T", out
        ), (
            args,
            out,
        )
    shown = v.ok(world.r, "case", "show", "inv")
    assert re.search(r"^created +\w{3} \d+ \w{3}", shown, re.M), shown
    assert re.search(r"^last deposit +\w{3} \d+ \w{3} .*\((now|\d+ seconds? ago)\)", shown, re.M)
    # --json keeps UTC, for programs.
    assert ISO.search(v.json(world.r, "case", "show", "inv")["created"])
    assert v.json(world.r, "case", "show", "inv")["last_deposit"].endswith("Z")
