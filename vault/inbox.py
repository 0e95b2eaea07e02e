"""The inbox: notices addressed to you from the nodes you know, and the "seen" cursor per node.

One implementation for `velador inbox` (cli/outlet_cmds.py) and the browser's inbox
(cli/ui/outlet.py), so that both show the same notices and agree on which are new: a notice
shown by one is not new for the other (issue 15: "no second implementation of any rule").

The node numbers its inbox items (docs/protocol.md §4.5, GET /v1/inbox?after=N); this laptop
keeps the highest number it has shown per node (table inbox_cursor, vault/state.py). A run asks
for what comes after the cursor, shows it, and only then moves the cursor (`mark_seen`), so a
crash between the two shows a notice twice rather than never. A "show all" run starts from 0
and moves nothing. Every item is signed by its node and checked by the client (vault/nodeproto)
before it reaches this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cards import Card
from .clock import Clock
from .errors import N_, NotFoundError
from .identity import Identity
from .state import LocalState
from .switch import NodeResult, fan_out

if TYPE_CHECKING:
    from .nodeproto.client import NodeClient

PAGE = 100
MAX_PAGES = 50
"""Items per request, and requests per node and run: 5000 notices; the rest come next run."""


def inbox_nodes(state: LocalState) -> list[tuple[str, Card]]:
    """The nodes in your contacts, (alias, card); an error with the fix when there is none."""
    nodes = [(alias, card) for alias, card in state.contacts() if card.role == "node"]
    if not nodes:
        raise NotFoundError(
            N_("you know no escrow node to ask for notices"),
            hint=N_("add the case's nodes: velador contact add NODE_CARD --alias NAME"),
        )
    return nodes


def cursor(state: LocalState, node_fp: str) -> int:
    """The number of the last inbox item of this node that was shown here (0: none)."""
    row = state.db.execute("SELECT seen FROM inbox_cursor WHERE node = ?", [node_fp]).fetchone()
    return int(row[0]) if row else 0


def save_cursor(state: LocalState, node_fp: str, seen: int, now: int) -> None:
    """Move a node's cursor forward (never back: two runs at once keep the larger)."""
    with state.tx():
        state.db.execute(
            "INSERT INTO inbox_cursor (node, seen, updated) VALUES (?, ?, ?) "
            "ON CONFLICT(node) DO UPDATE SET seen = max(seen, excluded.seen), "
            "updated = excluded.updated",
            [node_fp, seen, now],
        )


@dataclass
class Fetched:
    """One inbox run: what each node answered, and the notices, oldest first."""

    nodes: list[tuple[str, Card]]
    answers: list[NodeResult]
    after: dict[str, int]
    """Node fingerprint -> the cursor this run asked from (0 for every node when showing all)."""
    show_all: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    """The notices addressed to you, each with "node_alias", sorted by (time, node alias)."""

    @property
    def failed(self) -> list[tuple[str, NodeResult]]:
        """(alias, answer) of each node that could not be asked; its notices come next run."""
        return [(a, r) for (a, _c), r in zip(self.nodes, self.answers, strict=True) if not r.ok]


def fetch_inbox(
    state: LocalState,
    nodes: list[tuple[str, Card]],
    identity: Identity,
    clock: Clock,
    timeout: float,
    *,
    show_all: bool = False,
) -> Fetched:
    """Ask every node in parallel for the notices after its cursor (all of them if `show_all`).

    A notice addressed to someone else is dropped: the node should never send one (it would be
    a node bug), and it is not yours to read. Nothing is marked seen here: call `mark_seen`
    once the notices have been shown."""
    me = identity.card.fingerprint
    after = {c.fingerprint: 0 if show_all else cursor(state, c.fingerprint) for _a, c in nodes}

    def fetch(client: NodeClient) -> dict[str, Any]:
        last, mine = after[client.card.fingerprint], []
        for _page in range(MAX_PAGES):
            page = client.inbox(after=last, limit=PAGE)
            for item in page:
                last = max(last, int(item["id"]))
                if item["notice"].get("party") == me:
                    mine.append(item["notice"])
            if len(page) < PAGE:
                break
        return {"last": last, "notices": mine}

    answers = fan_out([c for _a, c in nodes], identity, clock, fetch, timeout)
    rows = sorted(
        (
            {"node_alias": alias, **n}
            for (alias, _c), a in zip(nodes, answers, strict=True)
            for n in (a.body or {}).get("notices", [])
        ),
        key=lambda n: (n.get("time", 0), n.get("node_alias", "")),
    )
    return Fetched(nodes, answers, after, show_all, rows)


def mark_seen(state: LocalState, fetched: Fetched, now: int) -> None:
    """After the notices of `fetched` were shown: they are no longer new, here or in the CLI.

    A "show all" run marks nothing (as `velador inbox --all`), and a node that failed keeps
    its cursor."""
    if fetched.show_all:
        return
    for a in fetched.answers:
        if a.ok and a.body and a.body["last"] > fetched.after[a.fingerprint]:
            save_cursor(state, a.fingerprint, a.body["last"], now)
