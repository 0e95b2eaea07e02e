"""Times as people read them: the local time zone with its name, plus a relative time.

    local_time(ts, now)  -> "Tue 3 Dec 14:05 CST"   (the year is added when it is not now's)
    relative(ts, now)    -> "in 2 days", "3 hours ago", "now"
    when(ts, now)        -> "Tue 3 Dec 14:05 CST (in 2 days)";  "-" for no time

Every time the CLI shows a person goes through this module, so the message catalog (cli/i18n.py)
translates the day and month names and the relative phrases in one place: in Spanish,
"mar 3 dic 14:05 CST (dentro de 2 días)". The zone is the process's local one (TZ,
/etc/localtime), read through the C library like `date`. UTC is used only in `--json` output and
logs (vault.clock.iso).
"""

from __future__ import annotations

import time

from vault.errors import N_

from .i18n import _, ngettext

DAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))
MONTHS = (
    N_("Jan"),
    N_("Feb"),
    N_("Mar"),
    N_("Apr"),
    N_("May"),
    N_("Jun"),
    N_("Jul"),
    N_("Aug"),
    N_("Sep"),
    N_("Oct"),
    N_("Nov"),
    N_("Dec"),
)


def _unit(size: int, n: int) -> str:
    # One ngettext call per unit, written out, so the catalog tools see every plural pair.
    if size == 7 * 86400:
        return ngettext("%(n)d week", "%(n)d weeks", n) % {"n": n}
    if size == 86400:
        return ngettext("%(n)d day", "%(n)d days", n) % {"n": n}
    if size == 3600:
        return ngettext("%(n)d hour", "%(n)d hours", n) % {"n": n}
    if size == 60:
        return ngettext("%(n)d minute", "%(n)d minutes", n) % {"n": n}
    return ngettext("%(n)d second", "%(n)d seconds", n) % {"n": n}


UNITS = (7 * 86400, 86400, 3600, 60, 1)


def local_time(ts: int, now: int | None = None) -> str:
    """'Tue 3 Dec 14:05 CST' in the local zone; the year is shown when it differs from now's."""
    t = time.localtime(ts)
    text = f"{_(DAYS[t.tm_wday])} {t.tm_mday} {_(MONTHS[t.tm_mon - 1])}"
    if now is None or time.localtime(now).tm_year != t.tm_year:
        text += f" {t.tm_year}"
    zone = t.tm_zone or time.strftime("%z", t)
    return f"{text} {t.tm_hour:02d}:{t.tm_min:02d} {zone}"


def span(seconds: int) -> str:
    """A length of time in words, at most two units: '2 days', '1 day 3 hours', '45 seconds'."""
    seconds = abs(int(seconds))
    parts: list[str] = []
    for size in UNITS:
        if seconds >= size and len(parts) < 2:
            n = seconds // size
            parts.append(_unit(size, n))
            seconds -= n * size
        elif parts:
            break  # "1 day 3 hours", never "1 day 0 hours 5 minutes"
    return " ".join(parts) or _unit(1, 0)


def relative(ts: int, now: int) -> str:
    """'in 2 days', '3 hours ago' or 'now' (within a minute)."""
    delta = int(ts) - int(now)
    if abs(delta) < 60:
        return _("now")
    if delta > 0:
        return _("in %(span)s") % {"span": span(delta)}
    return _("%(span)s ago") % {"span": span(delta)}


def when(ts: int | None, now: int) -> str:
    """'Tue 3 Dec 14:05 CST (in 2 days)', or '-' when there is no time."""
    if not ts:
        return "-"
    return f"{local_time(ts, now)} ({relative(ts, now)})"
