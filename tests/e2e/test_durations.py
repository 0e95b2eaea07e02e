"""vault/durations.py: what users type for intervals and dates, and the errors they see."""

from __future__ import annotations

import os
import time

import pytest

from vault.durations import human, parse_duration, parse_durations, parse_when
from vault.errors import PolicyError

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("45m", 2700),
        ("36h", 129600),
        ("3d", 259200),
        ("2w", 1209600),
        ("1d12h", 129600),
        (" 3D ", 259200),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3x", "--every '3x' is not a duration"),
        ("", "--every '' is not a duration"),
        ("-3d", "--every '-3d' is not a duration"),
        ("1.5d", "--every '1.5d' is not a duration"),
        ("90", "--every '90' has no unit"),
        ("0s", "--every '0s' must be longer than zero"),
        ("367d", "--every '367d' is longer than 366 days"),
        ("3d 2h", "--every '3d 2h' is not a duration"),
    ],
)
def test_bad_durations(text, message):
    with pytest.raises(PolicyError) as e:
        parse_duration(text, "--every")
    assert e.value.message == message


def test_zero_allowed_for_grace():
    assert parse_duration("0s", "--grace", allow_zero=True) == 0


def test_lists():
    assert parse_durations("12h,2h") == (43200, 7200)
    with pytest.raises(PolicyError) as e:
        parse_durations(" , ", "--remind")
    assert e.value.message == "--remind is empty"


@pytest.fixture
def local_zone():
    """Run with the process's local zone set by TZ (as a reporter's laptop has one)."""
    old = os.environ.get("TZ")

    def use(zone: str) -> None:
        os.environ["TZ"] = zone
        time.tzset()

    yield use
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_when_without_an_offset_is_local_time(local_zone):
    # Given a laptop in Mexico City (UTC-6, no daylight saving since 2022),
    local_zone("America/Mexico_City")
    # When the reporter types a date or time without an offset, it is her local time,
    assert parse_when("2026-12-20", NOW) == 1_797_724_800 + 6 * 3600
    assert parse_when("2026-01-02T08:30", NOW) == NOW + 86400 + 14 * 3600 + 1800
    # and an explicit offset or Z is taken as written.
    assert parse_when("2026-01-02T08:30Z", NOW) == NOW + 86400 + 8 * 3600 + 1800
    assert parse_when("2026-01-02T02:30-06:00", NOW) == NOW + 86400 + 8 * 3600 + 1800
    # In Tijuana (UTC-8 in winter) the same words mean two hours later.
    local_zone("America/Tijuana")
    assert parse_when("2026-01-02T08:30", NOW) == NOW + 86400 + 16 * 3600 + 1800


def test_when(local_zone):
    local_zone("UTC")
    assert parse_when("2026-12-20", NOW) == 1_797_724_800
    assert parse_when("2026-01-02T08:30", NOW) == NOW + 86400 + 8 * 3600 + 1800
    assert parse_when("2026-01-02T08:30Z", NOW) == NOW + 86400 + 8 * 3600 + 1800
    assert parse_when("2026-01-02T10:30+02:00", NOW) == NOW + 86400 + 8 * 3600 + 1800
    assert parse_when("3d", NOW) == NOW + 3 * 86400
    with pytest.raises(PolicyError) as e:
        parse_when("2025-12-31", NOW, "--until")
    assert e.value.message == "--until '2025-12-31' is in the past"
    with pytest.raises(PolicyError) as e:
        parse_when("next week", NOW, "--until")
    assert e.value.message == "--until 'next week' is not a date"


def test_human():
    assert [human(s) for s in (0, 90, 129600, 1209600 + 3600)] == [
        "0s",
        "1m 30s",
        "1d 12h",
        "2w 1h",
    ]
