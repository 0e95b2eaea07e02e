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
from vault.clock import iso

GROUP_GAP = 15 * 60
"""Notices of one event from different nodes arrive within minutes (each node runs its own
deadline engine, and a release waits for the pre-release sync). Further apart, it is a new
occurrence (the next reminder, another duress check-in)."""

RELEASE_REASONS = {
    "deadline": "the reporter did not check in before the deadline and the grace period ended",
    "editors": "the editors asked for it and the reporter did not object in time",
    "duress": "the reporter checked in with the duress passphrase",
    "reporter": "the reporter released it",
}

REPORTER_REASONS = {
    "deadline": "you did not check in before the deadline and the grace period ended",
    "editors": "your editors asked for it and you did not object in time",
    "reporter": "you released it",
}

# Sentences for people other than the reporter: {who} names the reporter (from your contacts).
OTHERS = {
    "reminder": "{who}: a check-in is due by {deadline}.",
    "overdue": "{who} missed the check-in deadline; the nodes release the case at {release_at} "
    "unless the reporter checks in.",
    "checked_in": "{who} checked in again after missing a deadline.",
    "pause_ended": "{who}: the pause ended and the switch is watching again.",
    "paused": "{who} paused the switch until {paused_until}.",
    "resumed": "{who} resumed the switch.",
    "editor_request": "{who}: an editor asked for a release of the case.",
    "editor_pending": "{who}: editors asked for a release; it happens at {release_at} unless "
    "the reporter objects.",
    "objection": "{who} objected to the editors' release request; it was cancelled.",
    "duress": "{who} checked in with the duress passphrase: treat the reporter as being under "
    "coercion, and do not reply through the reporter's devices.",
    "destroy_pending": "{who} asked the nodes to destroy their key shares at {destroy_at}; if "
    "that may be coerced, ask for a release before then.",
    "destroyed": "{who}: the nodes destroyed their key shares of the case.",
    "released": "{who}: the case was released because {reason}.",
}

# Sentences for the reporter about her own case: {case} is the case's local name.
REPORTER = {
    "reminder": "{case}: your check-in is due by {deadline}.",
    "overdue": "{case}: you missed the check-in deadline; the nodes release the case at "
    "{release_at} unless you check in.",
    "checked_in": "{case}: you checked in again after missing a deadline.",
    "pause_ended": "{case}: the pause ended and the switch is watching again.",
    "paused": "{case}: the switch is paused until {paused_until}.",
    "resumed": "{case}: the switch was resumed.",
    "editor_pending": "{case}: your editors asked for a release; it happens at {release_at} "
    "unless you object.",
    "objection": "{case}: your objection cancelled the editors' release request.",
    "destroy_pending": "{case}: the nodes destroy their key shares at {destroy_at}.",
    "destroyed": "{case}: the nodes destroyed their key shares.",
    "released": "{case}: your case was released because {reason}.",
}


# Which nodes said so: a sentence of its own after the event's sentence.
SEEN = "Case {case_id}, reported by {count} of {total} nodes ({nodes})."
SEEN_UNCOUNTED = "Case {case_id}, reported by {count} node(s) ({nodes})."
SEEN_OWN = "Reported by {count} of {total} nodes ({nodes})."
SEEN_OWN_UNCOUNTED = "Reported by {count} node(s) ({nodes})."


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
            return f"The reporter with fingerprint {fingerprint} (not in your contacts)"
        return "The reporter"

    def command(self, *args: str) -> str:
        return " ".join(["velador", *([self.home_args] if self.home_args else []), *args])


def home_args(home: Path, default: Path) -> str:
    """`--home H` when the reader's home is not the one a bare `velador` would use."""
    env = os.environ.get("VELADOR_HOME")
    plain = Path(env).expanduser() if env else default
    return "" if home.resolve() == plain.resolve() else f"--home {shlex.quote(str(home))}"


def describe(ev: Event, names: Names) -> tuple[str, str | None]:
    """(the event's line, the command to run next or None)."""
    own = names.own_cases.get(ev.case_id)
    if ev.event == "drill":  # issue 13: marked as a drill, with what to run (drill_cmds.py)
        from .drill_cmds import inbox_line

        return inbox_line(ev, names, own, {"count": len(ev.notices), "nodes": ", ".join(ev.nodes)})
    values = {
        "deadline": _when(ev.value("deadline")),
        "release_at": _when(ev.value("release_at")),
        "paused_until": _when(ev.value("paused_until")),
        "destroy_at": _when(ev.value("destroy_at")),
        "reason": RELEASE_REASONS.get(str(ev.value("release_reason")), "the nodes released it"),
    }
    total = _int(ev.value("nodes"))
    seen = {
        "count": len(ev.notices),
        "total": total if total and total >= len(ev.notices) else None,
        "nodes": ", ".join(ev.nodes),
        "case_id": ev.case_id,
    }
    if ev.to == "reporter" and ev.event in REPORTER and own:
        reason = REPORTER_REASONS.get(str(ev.value("release_reason")), values["reason"])
        line = REPORTER[ev.event].format(case=own, **{**values, "reason": reason})
        where = (SEEN_OWN if seen["total"] else SEEN_OWN_UNCOUNTED).format(**seen)
    else:
        if ev.event in OTHERS:
            line = OTHERS[ev.event].format(who=names.who(ev.value("reporter")), **values)
        else:  # an event this CLI does not know: the node's own words
            line = str(ev.value("text") or ev.event)
        where = (SEEN if seen["total"] else SEEN_UNCOUNTED).format(**seen)
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


def _when(ts: Any) -> str:
    value = _int(ts)
    return iso(value) if value else "-"
