"""Times as people read them: the local time zone with its name, plus a relative time.

    local_time(ts, now)  -> "Tue 3 Dec 14:05 CST"   (the year is added when it is not now's)
    relative(ts, now)    -> "in 2 days", "3 hours ago", "now"
    when(ts, now)        -> "Tue 3 Dec 14:05 CST (in 2 days)";  "-" for no time

Every time the CLI shows a person goes through this module, so that a later message catalog
(Spanish, Mexico) translates the day and month names and the relative phrases in one place. The
zone is the process's local one (TZ, /etc/localtime), read through the C library like `date`.
UTC is used only in `--json` output and logs (vault.clock.iso).
"""

from __future__ import annotations

import time

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
UNITS = (
    (7 * 86400, "week", "weeks"),
    (86400, "day", "days"),
    (3600, "hour", "hours"),
    (60, "minute", "minutes"),
    (1, "second", "seconds"),
)


def local_time(ts: int, now: int | None = None) -> str:
    """'Tue 3 Dec 14:05 CST' in the local zone; the year is shown when it differs from now's."""
    t = time.localtime(ts)
    text = f"{DAYS[t.tm_wday]} {t.tm_mday} {MONTHS[t.tm_mon - 1]}"
    if now is None or time.localtime(now).tm_year != t.tm_year:
        text += f" {t.tm_year}"
    zone = t.tm_zone or time.strftime("%z", t)
    return f"{text} {t.tm_hour:02d}:{t.tm_min:02d} {zone}"


def span(seconds: int) -> str:
    """A length of time in words, at most two units: '2 days', '1 day 3 hours', '45 seconds'."""
    seconds = abs(int(seconds))
    parts: list[str] = []
    for size, one, many in UNITS:
        if seconds >= size and len(parts) < 2:
            n = seconds // size
            parts.append(f"{n} {one if n == 1 else many}")
            seconds -= n * size
        elif parts:
            break  # "1 day 3 hours", never "1 day 0 hours 5 minutes"
    return " ".join(parts) or "0 seconds"


def relative(ts: int, now: int) -> str:
    """'in 2 days', '3 hours ago' or 'now' (within a minute)."""
    delta = int(ts) - int(now)
    if abs(delta) < 60:
        return "now"
    if delta > 0:
        return f"in {span(delta)}"
    return f"{span(delta)} ago"


def when(ts: int | None, now: int) -> str:
    """'Tue 3 Dec 14:05 CST (in 2 days)', or '-' when there is no time."""
    if not ts:
        return "-"
    return f"{local_time(ts, now)} ({relative(ts, now)})"
