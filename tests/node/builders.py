"""Test builders: identities, node cards, a signed policy and envelopes (no network)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault.cards import Card
from vault.identity import Identity, create_identity
from vault.policy import Holder, Policy, Switch, sign_policy
from vault.shares import ShareSpec, age_recipient_str, new_release_secret, split

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
PASS = "correct horse battery staple"


def person(home: Path, name: str, role: str, url: str | None = None) -> Identity:
    return create_identity(home, name, role, PASS, T0, url)


@dataclass
class World:
    reporter: Identity
    editors: list[Identity]
    recipients: list[Identity]
    outsider: Identity
    node_cards: list[Card]
    policy: Policy
    envelopes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """node fingerprint -> that node's envelopes."""
    mnemonics: list[str] = field(default_factory=list)
    secret: bytes = b""

    def envs_for(self, card: Card) -> list[dict[str, Any]]:
        return self.envelopes[card.fingerprint]


def make_world(
    root: Path,
    node_cards: list[Card],
    *,
    every: int = 3600,
    grace: int = 600,
    remind: tuple[int, ...] = (900, 300),
    n_editors: int = 2,
    quorum: int = 2,
    objection_window: int = 300,
    duress: str = "alert",
    destroy_delay: int = 0,
    n_recipients: int = 2,
    threshold: int | None = None,
    created: int = T0,
    people: dict[str, Identity] | None = None,
    replaces: Policy | None = None,
) -> World:
    from vault.envelope import make_envelopes

    people = people or {}
    tag = secrets.token_hex(3)

    def get(key: str, role: str) -> Identity:
        if key not in people:
            people[key] = person(root / f"{key}-{tag}", key, role)
        return people[key]

    reporter = get("reporter", "reporter")
    editors = [get(f"editor{i}", "editor") for i in range(n_editors)]
    recipients = [get(f"outlet{i}", "outlet") for i in range(n_recipients)]
    outsider = get("outsider", "editor")
    n = len(node_cards)
    k = threshold or (1 if n == 1 else 2)
    spec = ShareSpec(1, ((k, n),))
    secret = new_release_secret()
    groups = split(secret, spec)
    holders = tuple(Holder(f"node{i}", 0, i, "node", card) for i, card in enumerate(node_cards))
    switch = Switch(
        every=every,
        grace=grace,
        remind=remind,
        editors=tuple(e.card for e in editors),
        editor_quorum=quorum,
        objection_window=objection_window,
        duress=duress,
        destroy_delay=destroy_delay,
    )
    policy = Policy(
        case_id=replaces.case_id if replaces else "case-" + secrets.token_hex(8),
        created=created,
        reporter=reporter.card,
        recipients=tuple(r.card for r in recipients),
        release_recipient=age_recipient_str(secret),
        spec=spec,
        holders=holders,
        stores=("file:///tmp/velador-test-store",),
        switch=switch,
        replaces=replaces.hash if replaces else None,
    )
    policy = sign_policy(policy, reporter.sign_key)
    world = World(reporter, editors, recipients, outsider, list(node_cards), policy)
    world.mnemonics = list(groups[0])
    world.secret = secret
    for h, mnemonic in zip(holders, groups[0], strict=True):
        assert h.node is not None
        world.envelopes.setdefault(h.node.fingerprint, []).extend(
            make_envelopes(policy, h, mnemonic, reporter.sign_key)
        )
    return world
