"""The chain of replacements back to a case card's pin (docs/format.md §9.5; issue 11 finding 5).

A card pins one policy by its hash; after any number of rotations a policy counts when every
link back to the pinned one is the pinned policy's reporter's. A forged link, a missing link or
a link signed by somebody else is refused (no network here: `_pick_policy` judges answers)."""

from __future__ import annotations

import pytest

from vault.errors import AuthenticationError
from vault.netrecover import BAD, RELEASED, CaseRef, NodeResult, _pick_policy
from vault.policy import Policy, parse_policy, replacement_path
from vault.signing import sign_document

from ..node.builders import make_world, person


def _chain(tmp_path, n: int = 3):
    nodes = [
        person(tmp_path / f"n{i}", f"node-{i}", "node", f"http://n{i}.example") for i in (0, 1)
    ]
    cards = [n.card for n in nodes]
    first = make_world(tmp_path / "people", cards)
    people = {"reporter": first.reporter, "outsider": first.outsider}
    people.update({f"editor{i}": e for i, e in enumerate(first.editors)})
    people.update({f"outlet{i}": r for i, r in enumerate(first.recipients)})
    worlds = [first]
    for _ in range(n - 1):
        worlds.append(
            make_world(tmp_path / "people", cards, people=people, replaces=worlds[-1].policy)
        )
    return worlds, cards, people


def _forge(body: dict, signer) -> Policy:
    return parse_policy(sign_document("policy", body, signer.sign_key))


def test_any_chain_of_the_reporters_replacements_reaches_the_pin(tmp_path):
    worlds, _, _ = _chain(tmp_path, 4)
    p0, p1, p2, p3 = (w.policy for w in worlds)
    assert replacement_path(p0, p0.hash, []) == []
    assert replacement_path(p3, p0.hash, [p2, p1, p0]) == [p2, p1, p0]
    assert replacement_path(p3, p1.hash, [p0, p1, p2]) == [p2, p1]
    # A missing link, the pinned policy itself missing, or a bound too short: refused.
    assert replacement_path(p3, p0.hash, [p2, p0]) is None
    assert replacement_path(p1, p0.hash, []) is None
    assert replacement_path(p3, p0.hash, [p2, p1, p0], limit=2) is None


def test_a_link_signed_by_anybody_else_is_refused(tmp_path):
    worlds, _, people = _chain(tmp_path, 3)
    p0, p1, p2 = (w.policy for w in worlds)
    mallory = people["outsider"]
    # A forged middle link: P1's body re-signed by another key does not even parse as P1 ...
    with pytest.raises(AuthenticationError):
        parse_policy(sign_document("policy", p1.body(), mallory.sign_key))
    # ... and a policy that names another reporter and claims to replace the pinned one (what
    # a lying node would serve) does not reach the pin, directly or through a chain.
    mallory_reporter = person(tmp_path / "mallory", "Mallory", "reporter")
    body = dict(p1.body(), reporter=mallory_reporter.card.text)
    fake1 = _forge(body, mallory_reporter)
    assert fake1.replaces == p0.hash
    assert replacement_path(fake1, p0.hash, [p0]) is None
    fake2 = _forge(
        dict(p2.body(), reporter=mallory_reporter.card.text, replaces=fake1.hash), mallory_reporter
    )
    assert replacement_path(fake2, p0.hash, [fake1, p0]) is None
    # The genuine chain still works beside the forgery.
    assert replacement_path(p2, p0.hash, [fake1, p1, p0]) == [p1, p0]


def test_recovery_with_the_original_card_judges_each_node_by_its_chain(tmp_path):
    worlds, cards, people = _chain(tmp_path, 3)
    p0, p1, p2 = (w.policy for w in worlds)
    me = people["outlet0"]
    mallory = person(tmp_path / "mallory", "Mallory", "reporter")
    fake = _forge(dict(p2.body(), reporter=mallory.card.text, replaces=p0.hash), mallory)
    ref = CaseRef(p0.case_id, tuple(cards), p0.hash)
    honest = NodeResult(cards[0], RELEASED, policy=p2, chain=(p1, p0))
    liar = NodeResult(cards[1], RELEASED, policy=fake, chain=(p0,))
    assert _pick_policy(ref, [honest, liar], me.card) == p2
    assert honest.outcome == RELEASED
    assert (liar.outcome, liar.detail) == (
        BAD,
        "serves a policy that is not the one on the case card",
    )
    # Before this fix only the pinned policy or its direct replacement counted: after two
    # rotations the honest node was called a liar.
    bare = NodeResult(cards[0], RELEASED, policy=p2, chain=())
    assert _pick_policy(ref, [bare], me.card) is None and bare.outcome == BAD
