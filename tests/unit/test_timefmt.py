"""cli/timefmt.py: the one place times are written for people (local zone and its name, plus
a relative time; UTC stays in --json)."""

from __future__ import annotations

import time

import pytest

from cli.timefmt import local_time, relative, span, when

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture
def zone(monkeypatch):
    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def test_local_time_names_the_zone_and_shows_the_year_only_when_it_differs(zone):
    zone("America/Mexico_City")
    assert local_time(T0 + 86400, T0 + 86400) == "Thu 1 Jan 18:00 CST"
    assert local_time(T0, T0) == "Wed 31 Dec 18:00 CST"
    assert local_time(T0 + 86400, T0) == "Thu 1 Jan 2026 18:00 CST"  # now is still 2025 here
    zone("America/Tijuana")
    assert local_time(T0 + 200 * 86400, T0 + 200 * 86400) == "Sun 19 Jul 17:00 PDT"
    zone("UTC")
    assert local_time(T0, T0) == "Thu 1 Jan 00:00 UTC"


def test_relative_and_span():
    assert relative(T0 + 2 * 86400, T0) == "in 2 days"
    assert relative(T0 - 3 * 3600, T0) == "3 hours ago"
    assert relative(T0 + 30, T0) == "now"
    assert span(86400 + 3 * 3600 + 5 * 60) == "1 day 3 hours"
    assert span(86400 + 5 * 60) == "1 day"  # never "1 day 0 hours 5 minutes"
    assert span(90) == "1 minute 30 seconds"
    assert span(14 * 86400) == "2 weeks"


def test_when(zone):
    zone("America/Mexico_City")
    assert when(None, T0) == "-"
    assert when(T0 + 12 * 3600, T0) == "Thu 1 Jan 2026 06:00 CST (in 12 hours)"
