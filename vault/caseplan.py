"""What `velador case create` checks in what a person asked for, before anything is made.

The contacts given for each role, the switch's timings and editors, and how the key is split:
one set of rules for the CLI (cli/case_cmds.py) and the browser's case wizard (cli/ui/wizard.py),
so that a case refused in one is refused in the other with the same words (issue 15: "no second
implementation of any rule"). The messages name the CLI's options, which the wizard's fields
mirror.
"""

from __future__ import annotations

from .cards import Card
from .durations import parse_duration, parse_durations
from .errors import N_, Note, PolicyError
from .policy import Switch
from .shares import ShareSpec, parse_groups
from .state import LocalState


def share_spec(
    threshold: int | None, shares: int | None, groups: str | None, group_threshold: int | None
) -> ShareSpec:
    """How to split the release key: K of N (`--threshold`, `--shares`), or groups
    ("2of3,1of1" with a group threshold); one way, never both, and never left unsaid."""
    if groups:
        if threshold or shares:
            raise PolicyError(N_("use either --threshold/--shares or --groups, not both"))
        return parse_groups(groups, group_threshold)
    if not threshold or not shares:
        raise PolicyError(
            N_("say how to split the key"),
            hint=N_("e.g. --threshold 3 --shares 5, or --node per node"),
        )
    return ShareSpec(1, ((threshold, shares),))


ROLES_OF = {"editor": ("editor",), "node": ("node",), "recipient": ("outlet", "editor")}
"""What a contact given to an option must be, per kind of option (the keys below are the same)."""
NOT_IT = {
    "editor": N_("%(alias)s is not an editor (its role is %(role)s)"),
    "node": N_("%(alias)s is not a node (its role is %(role)s)"),
    "recipient": N_("%(alias)s is not an outlet recipient (its role is %(role)s)"),
}
"""The whole sentences that say a contact is not of the kind (the role in the reader's
language). Separate tables, not tuples, so tests/unit/test_errors_i18n.py can see each is N_."""
NOT_IT_HINT = {
    "editor": N_("this option takes contacts whose role is editor"),
    "node": N_("this option takes contacts whose role is node"),
    "recipient": N_("this option takes contacts whose role is outlet or editor"),
}
TWICE = {
    "editor": N_("the same editor is listed twice"),
    "node": N_("the same node is listed twice"),
    "recipient": N_("the same recipient is listed twice"),
}


def contact_cards(state: LocalState, aliases: tuple[str, ...], kind: str) -> list[Card]:
    """The contacts named for one role of a case (`kind`: a ROLES_OF key), in order.

    Refused: a contact of another role (an outlet given as a node would be sent key shares), a
    node without a URL (nothing could reach it), and the same contact twice (one party would
    count twice toward a threshold or a quorum)."""
    cards = [state.contact(a) for a in aliases]
    for alias, card in zip(aliases, cards, strict=True):
        if card.role not in ROLES_OF[kind]:
            # The role word is said in the reader's language: a Note is translated where the
            # error is shown (cli/i18n.error_text); the words are in the catalog (id_cmds.ROLES).
            raise PolicyError(
                NOT_IT[kind], hint=NOT_IT_HINT[kind], alias=alias, role=Note(card.role)
            )
        if card.role == "node" and not card.url:
            raise PolicyError(
                N_("node %(alias)s has no URL in its card"),
                hint=N_("ask for a new card"),
                alias=alias,
            )
    if len({c.fingerprint for c in cards}) != len(cards):
        raise PolicyError(TWICE[kind])
    return cards


def build_switch(
    state: LocalState,
    editors: tuple[str, ...],
    editor_quorum: int | None,
    objection_window: str | None,
    every: str | None,
    grace: str | None,
    remind: str | None,
    duress: str,
) -> Switch:
    """The dead-man's switch a person described (docs/protocol.md §5): check-in interval, grace,
    reminders inside the interval, and editors with a quorum and an objection window that make
    sense together. The durations are the text the person typed ("3d", "12h,2h")."""
    if not every or not grace:
        raise PolicyError(
            N_("a case with escrow nodes needs --every and --grace"),
            hint=N_(
                "e.g. --every 3d --grace 1d (check in every 3 days; release 1 day after a miss)"
            ),
        )
    every_s = parse_duration(every, "--every")
    grace_s = parse_duration(grace, "--grace", allow_zero=True)
    remind_s = parse_durations(remind, "--remind") if remind else ()
    for r in remind_s:
        if r >= every_s:
            raise PolicyError(
                N_(
                    "a reminder %(seconds)d s before the deadline is not inside the "
                    "%(every)s interval"
                ),
                hint=N_("reminders must be shorter than --every"),
                seconds=r,
                every=every,
            )
    editor_cards = contact_cards(state, editors, "editor")
    if editor_quorum is not None and not editor_cards:
        raise PolicyError(N_("--editor-quorum needs at least one --editor"))
    quorum = len(editor_cards) if editor_quorum is None else editor_quorum
    if editor_cards and not 1 <= quorum <= len(editor_cards):
        raise PolicyError(N_("--editor-quorum must be between 1 and %(n)d"), n=len(editor_cards))
    window = parse_duration(objection_window, "--objection-window") if objection_window else 86400
    if objection_window and not editor_cards:
        raise PolicyError(N_("--objection-window needs at least one --editor"))
    return Switch(
        every=every_s,
        grace=grace_s,
        remind=remind_s,
        editors=tuple(editor_cards),
        editor_quorum=quorum if editor_cards else 0,
        objection_window=window if editor_cards else 0,
        duress=duress,
    )
