"""How `velador inbox` tells people what happened: one line per event, in the reader's words.

Every node of a case sends its own signed notice of the same event (docs/protocol.md §3.6, §8).
Printed one per node, a release to five nodes was five near-identical paragraphs naming a bare
case id. Here the notices of one event are grouped ("2 of 3 nodes"), the reporter is named from
the reader's contacts, the reporter's own cases by their local names, and every suggested
command is complete, so it works when copied as written (issue 12 §7).

The node's own `text`/`next` stay in `--json` for scripts; the sentences here are the CLI's,
each a whole sentence with named placeholders so it can be translated.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault.cards import Card
from vault.errors import N_

from .i18n import _, ngettext
from .timefmt import local_time

GROUP_GAP = 15 * 60
"""Notices of one event from different nodes arrive within minutes (each node runs its own
deadline engine, and a release waits for the pre-release sync). Further apart, it is a new
occurrence (the next reminder, another duress check-in)."""

RELEASE_REASONS = {
    "deadline": N_("the reporter did not check in before the deadline and the grace period ended"),
    "editors": N_("the editors asked for it and the reporter did not object in time"),
    "duress": N_("the reporter checked in with the duress passphrase"),
    "reporter": N_("the reporter released it"),
}

REPORTER_REASONS = {
    "deadline": N_("you did not check in before the deadline and the grace period ended"),
    "editors": N_("your editors asked for it and you did not object in time"),
    "reporter": N_("you released it"),
}

# Sentences for people other than the reporter: %(who)s names the reporter (from your contacts).
OTHERS = {
    "reminder": N_("%(who)s: a check-in is due by %(deadline)s."),
    "overdue": N_(
        "%(who)s missed the check-in deadline; the nodes release the case at %(release_at)s "
        "unless the reporter checks in."
    ),
    "checked_in": N_("%(who)s checked in again after missing a deadline."),
    "pause_ended": N_("%(who)s: the pause ended and the switch is watching again."),
    "paused": N_("%(who)s paused the switch until %(paused_until)s."),
    "resumed": N_("%(who)s resumed the switch."),
    "editor_request": N_("%(who)s: an editor asked for a release of the case."),
    "editor_pending": N_(
        "%(who)s: editors asked for a release; it happens at %(release_at)s unless "
        "the reporter objects."
    ),
    "objection": N_("%(who)s objected to the editors' release request; it was cancelled."),
    "duress": N_(
        "%(who)s checked in with the duress passphrase: treat the reporter as being under "
        "coercion, and do not reply through the reporter's devices."
    ),
    "destroy_pending": N_(
        "%(who)s asked the nodes to destroy their key shares at %(destroy_at)s; if "
        "that may be coerced, ask for a release before then."
    ),
    "destroyed": N_("%(who)s: the nodes destroyed their key shares of the case."),
    "released": N_("%(who)s: the case was released because %(reason)s."),
}

# Sentences for the reporter about her own case: %(case)s is the case's local name.
REPORTER = {
    "reminder": N_("%(case)s: your check-in is due by %(deadline)s."),
    "overdue": N_(
        "%(case)s: you missed the check-in deadline; the nodes release the case at "
        "%(release_at)s unless you check in."
    ),
    "checked_in": N_("%(case)s: you checked in again after missing a deadline."),
    "pause_ended": N_("%(case)s: the pause ended and the switch is watching again."),
    "paused": N_("%(case)s: the switch is paused until %(paused_until)s."),
    "resumed": N_("%(case)s: the switch was resumed."),
    "editor_pending": N_(
        "%(case)s: your editors asked for a release; it happens at %(release_at)s "
        "unless you object."
    ),
    "objection": N_("%(case)s: your objection cancelled the editors' release request."),
    "destroy_pending": N_("%(case)s: the nodes destroy their key shares at %(destroy_at)s."),
    "destroyed": N_("%(case)s: the nodes destroyed their key shares."),
    "released": N_("%(case)s: your case was released because %(reason)s."),
}


def _seen(count: int, total: int | None, nodes: str, case_id: str | None) -> str:
    """Which nodes said so: a sentence of its own after the event's sentence (`case_id` for
    readers to whom the case is not their own)."""
    values = {"count": count, "total": total, "nodes": nodes, "case_id": case_id}
    if case_id is not None and total:
        return (
            ngettext(
                "Case %(case_id)s, reported by %(count)d of %(total)d nodes (%(nodes)s).",
                "Case %(case_id)s, reported by %(count)d of %(total)d nodes (%(nodes)s).",
                count,
            )
            % values
        )
    if case_id is not None:
        return (
            ngettext(
                "Case %(case_id)s, reported by %(count)d node (%(nodes)s).",
                "Case %(case_id)s, reported by %(count)d nodes (%(nodes)s).",
                count,
            )
            % values
        )
    if total:
        return (
            ngettext(
                "Reported by %(count)d of %(total)d nodes (%(nodes)s).",
                "Reported by %(count)d of %(total)d nodes (%(nodes)s).",
                count,
            )
            % values
        )
    return (
        ngettext(
            "Reported by %(count)d node (%(nodes)s).",
            "Reported by %(count)d nodes (%(nodes)s).",
            count,
        )
        % values
    )


@dataclass
class Event:
    """The notices several nodes sent about one thing that happened to one case."""

    case_id: str
    event: str
    to: str
    time: int
    last: int
    notices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        return [n["node_alias"] for n in self.notices]

    def value(self, key: str) -> Any:
        """A value the nodes agree on, else the first one given (each node's claim is its own)."""
        values = [n.get(key) for n in self.notices if n.get(key) is not None]
        return values[0] if values else None


def group(rows: list[dict[str, Any]]) -> list[Event]:
    """Notices (sorted by time) -> events: same case, event and audience, close in time, one
    notice per node."""
    events: list[Event] = []
    open_: dict[tuple[str, str, str], Event] = {}
    for n in sorted(rows, key=lambda r: (_int(r.get("time")) or 0, r.get("node_alias", ""))):
        key = (str(n.get("case_id")), str(n.get("event")), str(n.get("to")))
        t = _int(n.get("time")) or 0
        ev = open_.get(key)
        if ev is None or t - ev.last > GROUP_GAP or n["node_alias"] in ev.nodes:
            ev = Event(key[0], key[1], key[2], t, t)
            events.append(ev)
            open_[key] = ev
        ev.notices.append(n)
        ev.last = t
    return events


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Names:
    """What the reader calls people and cases: contact aliases, the reporter's case names."""

    def __init__(
        self, contacts: list[tuple[str, Card]], own_cases: dict[str, str], home_args: str
    ) -> None:
        self.by_fp = {card.fingerprint: (alias, card) for alias, card in contacts}
        self.own_cases = own_cases
        self.home_args = home_args

    def who(self, fingerprint: Any) -> str:
        if isinstance(fingerprint, str) and fingerprint in self.by_fp:
            alias, card = self.by_fp[fingerprint]
            return f"{card.name} ({alias})" if alias != card.name else card.name
        if isinstance(fingerprint, str) and len(fingerprint) == 19:
            return _("The reporter with fingerprint %(fingerprint)s (not in your contacts)") % {
                "fingerprint": fingerprint
            }
        return _("The reporter")

    def command(self, *args: str) -> str:
        return " ".join(["velador", *([self.home_args] if self.home_args else []), *args])


def home_args(home: Path, default: Path) -> str:
    """`--home H` when the reader's home is not the one a bare `velador` would use."""
    env = os.environ.get("VELADOR_HOME")
    plain = Path(env).expanduser() if env else default
    return "" if home.resolve() == plain.resolve() else f"--home {shlex.quote(str(home))}"


def describe(ev: Event, names: Names, now: int | None = None) -> tuple[str, str | None]:
    """(the event's line, the command to run next or None); times local, relative to `now`."""
    own = names.own_cases.get(ev.case_id)
    if ev.event == "drill":  # issue 13: marked as a drill, with what to run (drill_cmds.py)
        from .drill_cmds import inbox_line

        seen = {"count": len(ev.notices), "nodes": ", ".join(ev.nodes)}
        return inbox_line(ev, names, own, seen, now)
    reason = RELEASE_REASONS.get(str(ev.value("release_reason")), N_("the nodes released it"))
    values = {
        "deadline": _when(ev.value("deadline"), now),
        "release_at": _when(ev.value("release_at"), now),
        "paused_until": _when(ev.value("paused_until"), now),
        "destroy_at": _when(ev.value("destroy_at"), now),
        "reason": _(reason),
    }
    total = _int(ev.value("nodes"))
    count = len(ev.notices)
    total = total if total and total >= count else None
    nodes = ", ".join(ev.nodes)
    if ev.to == "reporter" and ev.event in REPORTER and own:
        mine = REPORTER_REASONS.get(str(ev.value("release_reason")), reason)
        line = _(REPORTER[ev.event]) % {**values, "case": own, "reason": _(mine)}
        where = _seen(count, total, nodes, None)
    else:
        if ev.event in OTHERS:
            line = _(OTHERS[ev.event]) % {**values, "who": names.who(ev.value("reporter"))}
        else:  # an event this CLI does not know: the node's own words
            line = str(ev.value("text") or ev.event)
        where = _seen(count, total, nodes, ev.case_id)
    return f"{line} {where}", _next(ev, names, own)


def _next(ev: Event, names: Names, own: str | None) -> str | None:
    case = own or ev.case_id
    if ev.to == "reporter":
        if ev.event in ("reminder", "overdue"):
            return names.command("checkin", shlex.quote(case))
        if ev.event == "editor_pending":
            return names.command("release", "object", shlex.quote(case))
        if ev.event == "released":
            return names.command("status", shlex.quote(case))
        return None
    if ev.to == "recipient" and ev.event == "released":
        out = f"recovered-{ev.case_id[:8]}"
        return names.command("recover", ev.case_id, "--out", out)
    if ev.to == "editor" and ev.event in ("overdue", "destroy_pending"):
        return names.command("release", "request", ev.case_id)
    if ev.to == "editor" and ev.event in ("editor_request", "editor_pending", "duress"):
        return names.command("status", ev.case_id)
    return None


def _when(ts: Any, now: int | None) -> str:
    value = _int(ts)
    return local_time(value, now) if value else "-"
