"""An editor's release request as the editor reads it: each node's answer, judged one way.

`velador release request` (cli/outlet_cmds.py) and the browser's editor page (cli/ui/editor.py)
both send the request to every node of the case and read the answers with `Asked.of`, so a node
that does not hold the case, refuses, or cannot be reached is said the same way in both. No
click here: the browser app imports it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.cards import Card
from vault.errors import (
    N_,
    AuthenticationError,
    NodeError,
    NotFoundError,
    PolicyError,
    VeladorError,
)

from .i18n import error_text


@dataclass
class Asked:
    """One node's answer to a release request, as the editor should read it."""

    card: Card
    outcome: str
    detail: str = ""
    receipt: dict[str, Any] | None = None

    @classmethod
    def of(cls, card: Card, error: VeladorError | None, body: dict[str, Any] | None) -> Asked:
        """Judge one node's answer: its receipt, or the error that says why it did not count."""
        if error is None:
            return cls(card, "accepted", receipt=body)
        if error.template == "node %(node)s: %(detail)s":  # the node's own words, unprefixed
            detail = str(error.params.get("detail", ""))
        else:
            detail = error_text(error)[0].removeprefix(f"node {card.name}: ")
        if isinstance(error, NotFoundError):
            return cls(card, "does not hold the case")
        if isinstance(error, PolicyError):
            forbidden = getattr(error, "code", None) == "forbidden"
            return cls(card, "refused" if forbidden else "not accepted", detail)
        if isinstance(error, NodeError):
            return cls(card, "unreachable", detail)
        if isinstance(error, AuthenticationError):
            return cls(card, "not verified", detail)
        return cls(card, "failed", detail)


REQUEST_OUTCOMES = {
    "accepted": N_("accepted"),
    "does not hold the case": N_("does not hold the case"),
    "refused": N_("refused"),
    "not accepted": N_("not accepted"),
    "unreachable": N_("unreachable"),
    "not verified": N_("not verified"),
    "failed": N_("failed"),
}
"""Asked outcomes as the editor reads them (--json keeps the English codes)."""
