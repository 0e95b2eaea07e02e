"""How every reporter view says that a case was released: when, by which rule, what it means.

`case list`, `status`, `checkin` and `audit` all print these lines (vault/released.py holds what
the laptop learned). Each message is one whole sentence, so a later catalog can translate it.
"""

from __future__ import annotations

from typing import Any

from vault.clock import iso
from vault.released import ReleaseInfo

from .timefmt import when

RULE_TEXT = {
    "deadline": "you did not check in before the deadline and the grace period ran out",
    "editors": "your editors asked for a release and no objection came in time",
    "reporter": "you released it yourself ('velador release now')",
}
UNKNOWN_RULE = "the nodes did not say which rule released it"


def rule_text(info: ReleaseInfo) -> str:
    return RULE_TEXT.get(info.rule or "", UNKNOWN_RULE)


def released_when(info: ReleaseInfo, now: int) -> str:
    if not info.released_at:
        return "at a time the nodes did not give"
    return f"on {when(info.released_at, now)}"


def release_lines(case: str, info: ReleaseInfo, now: int) -> list[str]:
    """The full notice, first line first (the one a reporter must not miss)."""
    if not info.complete:
        return [
            f"{len(info.nodes)} of {info.total} escrow nodes say case {case} was released "
            f"{released_when(info, now)}: {rule_text(info)}.",
            "The other nodes have not released it, so your recipients cannot open the material "
            "until enough shares are released.",
            f"Keep checking in while the other nodes still watch the case, and run "
            f"'velador status {case}' to see each node's state.",
        ]
    return [
        f"Case {case} was RELEASED {released_when(info, now)}: {rule_text(info)}.",
        "Your recipient outlets can now open the material you deposited in this case.",
        "Checking in no longer changes anything for this case.",
        "If you are safe, tell your recipient outlets and your editors now: the nodes told them "
        "that the material is theirs to open.",
        "To escrow new material, create a new case ('velador case create').",
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
    """The one word `case list` and the `status` header show for the switch."""
    if info is None:
        return fallback
    if info.complete:
        return "RELEASED"
    return f"{fallback}, {len(info.nodes)} of {info.total} nodes released"


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
    return [
        f"The nodes were due to release case {case} on {when(due, now)}, and this laptop has "
        "heard nothing from them since.",
        f"If you have not checked in since then, the case is probably released: run "
        f"'velador status {case}' to ask the nodes.",
    ]
