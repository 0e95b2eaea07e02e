"""How every reporter view says that a case was released: when, by which rule, what it means.

`case list`, `status`, `checkin` and `audit` all print these lines (vault/released.py holds what
the laptop learned). Each message is one whole sentence in the catalog (cli/i18n.py); the rule
is a clause of its own, one per rule, put into the sentence whole.

The status words the views show (the nodes' states, the laptop's view of a case) are here too,
so every table says them the same way in both languages.
"""

from __future__ import annotations

from typing import Any

from vault.clock import iso
from vault.errors import N_
from vault.released import ReleaseInfo

from .i18n import _
from .timefmt import when

RULE_TEXT = {
    "deadline": N_("you did not check in before the deadline and the grace period ran out"),
    "editors": N_("your editors asked for a release and no objection came in time"),
    "reporter": N_("you released it yourself ('velador release now')"),
}
UNKNOWN_RULE = N_("the nodes did not say which rule released it")

NODE_STATES = {
    "ARMED": N_("ARMED"),
    "REMINDED": N_("REMINDED"),
    "OVERDUE": N_("OVERDUE"),
    "EDITOR_PENDING": N_("EDITOR_PENDING"),
    "PAUSED": N_("PAUSED"),
    "DESTROYING": N_("DESTROYING"),
    "RELEASED": N_("RELEASED"),
    "DESTROYED": N_("DESTROYED"),
}
"""A node's state (docs/protocol.md §5), as the tables show it."""

LOCAL_STATES = {
    "armed": N_("armed"),
    "arming": N_("arming"),
    "offline": N_("offline"),
    "active": N_("active"),
    "released": N_("released"),
    "destroyed": N_("destroyed"),
    "you are not its reporter": N_("you are not its reporter"),
}
"""The laptop's word for a case (vault.switch.arming_state, CaseRecord.status; an editor's or
recipient's `status` of a case they do not own says NOT_REPORTER)."""
NOT_REPORTER = "you are not its reporter"

REGISTRATIONS = {
    "registered": N_("registered"),
    "pending": N_("pending"),
    "refused": N_("refused"),
    "unreachable": N_("unreachable"),
}
"""Where a case's registration at one node stands (vault.switch.ArmReport)."""


def state_word(state: Any) -> str:
    """A node's state, a case's local state or a registration, in the reader's language."""
    text = str(state) if state else "-"
    for words in (NODE_STATES, LOCAL_STATES, REGISTRATIONS):
        if text in words:
            return _(words[text])
    return text


def rule_text(info: ReleaseInfo) -> str:
    return _(RULE_TEXT.get(info.rule or "", UNKNOWN_RULE))


def release_lines(case: str, info: ReleaseInfo, now: int) -> list[str]:
    """The full notice, first line first (the one a reporter must not miss)."""
    values = {
        "case": case,
        "n": len(info.nodes),
        "total": info.total,
        "rule": rule_text(info),
        "when": when(info.released_at, now) if info.released_at else "",
    }
    if not info.complete:
        if info.released_at:
            first = _(
                "%(n)d of %(total)d escrow nodes say case %(case)s was released on %(when)s: "
                "%(rule)s."
            )
        else:
            first = _(
                "%(n)d of %(total)d escrow nodes say case %(case)s was released at a time the "
                "nodes did not give: %(rule)s."
            )
        return [
            first % values,
            _(
                "The other nodes have not released it, so your recipients cannot open the "
                "material until enough shares are released."
            ),
            _(
                "Keep checking in while the other nodes still watch the case, and run "
                "'velador status %(case)s' to see each node's state."
            )
            % values,
        ]
    if info.released_at:
        first = _("Case %(case)s was RELEASED on %(when)s: %(rule)s.")
    else:
        first = _("Case %(case)s was RELEASED at a time the nodes did not give: %(rule)s.")
    return [
        first % values,
        _("Your recipient outlets can now open the material you deposited in this case."),
        _("Checking in no longer changes anything for this case."),
        _(
            "If you are safe, tell your recipient outlets and your editors now: the nodes told "
            "them that the material is theirs to open."
        ),
        _("To escrow new material, create a new case ('velador case create')."),
    ]


def print_release(con: Any, case: str, info: ReleaseInfo | None, now: int) -> None:
    """Print the notice in bold on a rich console (nothing when there is no release)."""
    if info is None:
        return
    from rich.text import Text

    lines = release_lines(case, info, now)
    con.print(Text(lines[0], style="bold red"))
    for line in lines[1:]:
        con.print(line, markup=False, highlight=False)


def switch_label(info: ReleaseInfo | None, fallback: str) -> str:
    """The word `case list` and the `status` header show for the switch."""
    if info is None:
        return state_word(fallback)
    if info.complete:
        return state_word("RELEASED")
    return _("%(state)s, %(n)d of %(total)d nodes released") % {
        "state": state_word(fallback),
        "n": len(info.nodes),
        "total": info.total,
    }


def release_json(info: ReleaseInfo | None) -> dict[str, Any] | None:
    """For --json: times in UTC."""
    if info is None:
        return None
    doc = info.to_json()
    doc["released_at_utc"] = iso(info.released_at) if info.released_at else None
    return doc


def due_release(views: list[dict[str, Any]], now: int) -> int | None:
    """The release time the nodes last gave, when it has passed (None otherwise): offline,
    `case list` cannot know of a release, but it can say that one was due."""
    times = [v["release_at"] for v in views if v.get("release_at") and v.get("state") != "RELEASED"]
    latest = max(times) if times else None
    return latest if latest is not None and latest <= now else None


def due_lines(case: str, due: int, now: int) -> list[str]:
    values = {"case": case, "when": when(due, now)}
    return [
        _(
            "The nodes were due to release case %(case)s on %(when)s, and this laptop has heard "
            "nothing from them since."
        )
        % values,
        _(
            "If you have not checked in since then, the case is probably released: run "
            "'velador status %(case)s' to ask the nodes."
        )
        % values,
    ]
