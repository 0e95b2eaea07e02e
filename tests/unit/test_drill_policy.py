"""`switch.drill_every` in the policy (docs/format.md §4) and the drill verdict (protocol §11.5)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.node.builders import make_world
from vault import drill as vdrill
from vault.encoding import canonical_json
from vault.errors import FormatError
from vault.policy import parse_policy, sign_policy
from vault.switch import NodeResult


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from nacl.public import PrivateKey
    from nacl.signing import SigningKey

    from vault.cards import make_card

    cards = [
        make_card(
            f"n{i}",
            "node",
            SigningKey.generate(),
            bytes(PrivateKey.generate().public_key),
            1,
            f"https://n{i}.example.org",
        )
        for i in range(3)
    ]
    return make_world(tmp_path_factory.mktemp("w"), cards, n_editors=1, quorum=1)


def test_a_policy_without_drills_is_unchanged(world):
    body = world.policy.body()
    assert "drill_every" not in body["switch"]  # byte-identical to policies before drills
    again = sign_policy(
        replace(world.policy, switch=replace(world.policy.switch, drill_every=0)),
        world.reporter.sign_key,
    )
    assert canonical_json(again.doc) == canonical_json(world.policy.doc)


def test_drill_every_round_trips_and_is_bounded(world):
    sw = replace(world.policy.switch, drill_every=90 * 86400)
    pol = sign_policy(replace(world.policy, switch=sw), world.reporter.sign_key)
    assert parse_policy(pol.doc).switch.drill_every == 90 * 86400
    short = replace(world.policy.switch, drill_every=3600)
    with pytest.raises(FormatError):  # under one day: refused by writer and reader alike
        parse_policy(sign_policy(replace(world.policy, switch=short), world.reporter.sign_key).doc)


def _report(policy, node, parties):
    body = {"drill": "d1", "started": 1, "needed": 2, "parties": parties}
    return NodeResult(node.name, node.fingerprint, body=body)


def _party(card, role, ok=True, channels=None):
    proofs = {"key": ok, "reach": True, "stores": True, "software": True}
    return {
        "party": card.fingerprint,
        "role": role,
        "answered": 5,
        "proofs": proofs,
        "channels": channels or [{"channel": "inbox", "target": "", "result": "delivered"}],
    }


def test_the_verdict_counts_recipients_and_working_nodes(world):
    p = world.policy
    everyone = [_party(r, "recipient") for r in p.recipients] + [
        _party(e, "editor") for e in p.switch.editors
    ]
    reports = [_report(p, n, everyone) for n in p.nodes]
    v = vdrill.verdict(p, reports)
    assert v.ok and (v.recipients_ok, v.recipients, v.nodes_ok, v.nodes) == (2, 2, 3, 3)
    # one recipient fails the key proof everywhere, one node's email fails
    broken = [_party(p.recipients[0], "recipient", ok=False), *everyone[1:]]
    mail = [{"channel": "email", "target": "a***@x.org", "result": "failing", "error": "refused"}]
    broken[1] = _party(p.recipients[1], "recipient", channels=mail)
    reports = [
        _report(p, p.nodes[0], broken),
        *[_report(p, n, broken[:1] + everyone[1:]) for n in p.nodes[1:]],
    ]
    v = vdrill.verdict(p, reports)
    text = " | ".join(x.english for x in v.problems)
    assert (v.recipients_ok, v.nodes_ok) == (1, 2)
    assert "cannot open what is sealed to it" in text and "rotate the case" in text
    assert f"node {p.nodes[0].name} could not send email" in text


def test_an_answer_by_case_id_checks_only_stores_k_nodes_agree_on():
    from vault.drill import agreed_stores

    good = ["s3://b/v", "file:///media/usb"]
    liar = ["http://169.254.169.254/latest"]
    # Three nodes name the policy's stores, one names a URL of its choosing: K = 2
    offers = [{"stores": good}, {"stores": good}, {"stores": liar}, {"stores": good}]
    assert agreed_stores(offers, 2) == good
    # One node alone cannot send the answerer anywhere, however many entries it lists
    assert agreed_stores([{"stores": liar}, {"stores": []}, {}], 2) == []
    assert agreed_stores([{"stores": "s3://x"}, {"stores": [1]}], 1) == []
