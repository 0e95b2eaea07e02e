"""Durations and dates as people type them on the command line.

    parse_duration("90s") == 90          units: s, m, h, d, w; several may follow each other
    parse_duration("1d12h") == 129600    ("1d12h" = 36 hours); no sign, no fractions, no spaces
    parse_durations("12h,2h") == (43200, 7200)
    parse_when("2026-12-20", now)        00:00 local time that day; also "2026-12-20T08:30"
                                         (local), "...Z" (UTC), "...-06:00", or a duration
                                         from now ("3d")
    human(129600) == "1d 12h"

Every error is a PolicyError whose message quotes what was typed and shows the expected form, so
the CLI prints one line the user can act on.
"""

from __future__ import annotations

import re
from datetime import datetime

from .errors import N_, PolicyError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION = 366 * 86400
"""The policy format caps every interval at one (leap) year (docs/format.md §4)."""

_PART = re.compile(r"(\d{1,7})([smhdw])")
_EXAMPLES = N_("for example 90s, 45m, 36h, 3d, 2w or 1d12h")


def parse_duration(text: str, what: str = "duration", allow_zero: bool = False) -> int:
    """Seconds in `text`; `what` names the option in the error message."""
    raw = text.strip().lower()
    pos = 0
    total = 0
    for m in _PART.finditer(raw):
        if m.start() != pos:
            break
        total += int(m.group(1)) * UNITS[m.group(2)]
        pos = m.end()
    if not raw or pos != len(raw):
        if raw.isdigit():
            raise PolicyError(
                N_("%(what)s %(text)r has no unit"),
                hint=N_("add s, m, h, d or w (for example 90s, 45m, 36h, 3d, 2w or 1d12h)"),
                what=what,
                text=text,
            )
        raise PolicyError(
            N_("%(what)s %(text)r is not a duration"), hint=_EXAMPLES, what=what, text=text
        )
    if total == 0 and not allow_zero:
        raise PolicyError(
            N_("%(what)s %(text)r must be longer than zero"), hint=_EXAMPLES, what=what, text=text
        )
    if total > MAX_DURATION:
        raise PolicyError(
            N_("%(what)s %(text)r is longer than 366 days"),
            hint=N_("use at most 366d (52w)"),
            what=what,
            text=text,
        )
    return total


def parse_durations(text: str, what: str = "duration") -> tuple[int, ...]:
    """A comma-separated list: "12h,2h"."""
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    if not parts:
        raise PolicyError(
            N_("%(what)s is empty"),
            hint=N_("give a comma-separated list, for example 12h,2h"),
            what=what,
        )
    return tuple(parse_duration(p, what) for p in parts)


def parse_when(text: str, now: int, what: str = "date") -> int:
    """A moment in the future: an ISO date or date-time, or a duration from `now`.

    A date or time without an offset is the user's local time (the machine's zone, or TZ):
    a reporter in Culiacán who types 2026-12-24T09:00 means nine in the morning there, not in
    London. `Z` or an explicit offset (-06:00) is taken as written."""
    raw = text.strip()
    if raw and raw[0].isdigit() and raw[-1].lower() in UNITS and "-" not in raw:
        return now + parse_duration(raw, what)
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PolicyError(
            N_("%(what)s %(text)r is not a date"),
            hint=N_("use YYYY-MM-DD, YYYY-MM-DDTHH:MM (your local time) or a duration such as 3d"),
            what=what,
            text=text,
        ) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive: local time, with the offset the zone has on that date
    when = int(dt.timestamp())
    if when <= now:
        raise PolicyError(
            N_("%(what)s %(text)r is in the past"),
            hint=N_("give a date or time that is still to come"),
            what=what,
            text=text,
        )
    return when


def human(seconds: int) -> str:
    """Two largest units: 129600 -> '1d 12h', 90 -> '1m 30s', 0 -> '0s'."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("w", UNITS["w"]), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])
