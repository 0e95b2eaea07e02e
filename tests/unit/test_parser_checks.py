"""Reader rules closed after 0.1.0 (docs/format.md §1.1, §4, §5.2): each refusal, word for word."""

from __future__ import annotations

import json

import pytest
from nacl.public import PublicKey, SealedBox

from vault.case import plan_holders
from vault.encoding import b64e, canonical_json, parse_json
from vault.envelope import make_envelopes, open_envelope
from vault.errors import FormatError
from vault.identity import create_identity
from vault.policy import Policy, Switch, parse_policy, sign_policy
from vault.shares import ShareSpec, age_recipient_str, new_release_secret, split
from vault.signing import sign_document

# --- duplicate JSON members ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('{"a":1,"a":2}', "a"),
        ('{"body":{"v":1,"v":2},"kind":"policy"}', "v"),
        ('[{"x":[{"k":1,"k":1}]}]', "k"),
    ],
)
def test_duplicate_members_are_refused(text, name):
    with pytest.raises(FormatError) as exc:
        parse_json(text, "case policy")
    assert str(exc.value) == f"case policy has two members named {name!r}"


def test_canonical_documents_still_round_trip():
    value = {"b": [1, "ñ", {"z": None, "y": True}], "a": {"": 0, "A": -(2**63)}}
    assert parse_json(canonical_json(value), "x") == value
    # Equal names at different levels are not duplicates.
    assert parse_json('{"a":{"a":{"a":1}}}', "x") == {"a": {"a": {"a": 1}}}


def test_a_signed_policy_with_a_duplicate_member_is_refused(world):
    # Given a validly signed policy, re-serialized with a second "stores" member appended:
    # one reader keeping the first and another the last would disagree on where the data is
    text = json.dumps(world.policy.doc)
    assert text.endswith("}")
    tampered = text[:-1] + ', "kind": "policy"}'
    with pytest.raises(FormatError, match=r"^case policy has two members named 'kind'$"):
        parse_policy(tampered)


# --- policies ----------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    w = type("World", (), {})()
    w.reporter = create_identity(tmp_path / "r", "Rita", "reporter", "pw", created=1)
    w.outlet = create_identity(tmp_path / "o", "Outlet One", "outlet", "pw", created=1)
    w.editor = create_identity(tmp_path / "e", "Ed Itor", "editor", "pw", created=1)
    w.node = create_identity(tmp_path / "n", "Node", "node", "pw", 1, "https://n.example")
    w.secret = new_release_secret()
    w.spec = ShareSpec(1, ((2, 3),))
    w.base = Policy(
        case_id="c0ffee" * 3 + "ab",
        created=1,
        reporter=w.reporter.card,
        recipients=(w.outlet.card,),
        release_recipient=age_recipient_str(w.secret),
        spec=w.spec,
        holders=plan_holders(w.spec, []),
        stores=("file:///tmp/nowhere",),
    )
    w.policy = sign_policy(w.base, w.reporter.sign_key)
    return w


def resigned(w, mutate) -> dict:
    """The world's policy body after `mutate(body)`, signed again by the reporter."""
    body = json.loads(canonical_json(w.policy.body()))
    mutate(body)
    return sign_document("policy", body, w.reporter.sign_key)


def test_sane_policy_parses(world):
    assert parse_policy(json.dumps(world.policy.doc)).hash == world.policy.hash


def test_editor_recipients_are_allowed(world):
    # `case create` accepts outlets and editors as recipients; readers agree with it.
    doc = resigned(world, lambda b: b["recipients"].append(world.editor.card.text))
    assert len(parse_policy(doc).recipients) == 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda w, b: b.update(replaces="AB" * 32),
            "case policy: 'replaces' must be a policy hash (64 lowercase hex)",
        ),
        (
            lambda w, b: b.update(replaces="x" * 64),
            "case policy: 'replaces' must be a policy hash (64 lowercase hex)",
        ),
        (
            lambda w, b: b["recipients"].append(w.reporter.card.text),
            "case policy lists 'Rita' (reporter) among its recipients; recipients must be "
            "outlet or editor cards",
        ),
        (
            lambda w, b: b["recipients"].append(w.node.card.text),
            "case policy lists 'Node' (node) among its recipients; recipients must be "
            "outlet or editor cards",
        ),
        (
            lambda w, b: b["recipients"].append(w.outlet.card.text),
            "case policy lists one of its recipients twice",
        ),
        (lambda w, b: b.update(name="caso-puerto"), "case policy has an unknown field 'name'"),
        (
            lambda w, b: b["sharing"].update(salt=1),
            "sharing has an unknown field 'salt'",
        ),
        (
            lambda w, b: b["sharing"]["groups"][0].update(x=1),
            "group has an unknown field 'x'",
        ),
        (
            lambda w, b: b["sharing"]["holders"][0].update(note="usb"),
            "holder has an unknown field 'note'",
        ),
        (
            lambda w, b: b["sharing"]["holders"][0].update(node=w.node.card.text),
            "holder has an unknown field 'node'",
        ),
    ],
)
def test_policy_reader_rules(world, mutate, message):
    doc = resigned(world, lambda b: mutate(world, b))
    with pytest.raises(FormatError) as exc:
        parse_policy(doc)
    assert str(exc.value) == message


def _with_switch(w, editors) -> dict:
    holders = plan_holders(w.spec, [w.node.card])
    p = Policy(
        **{
            **w.base.__dict__,
            "holders": holders,
            "switch": Switch(every=86400, grace=3600, editors=tuple(editors), editor_quorum=1),
            "doc": {},
        }
    )
    return sign_document("policy", p.body(), w.reporter.sign_key)


def test_switch_editors_must_be_editors(world):
    assert parse_policy(_with_switch(world, [world.editor.card])).switch is not None
    with pytest.raises(FormatError) as exc:
        parse_policy(_with_switch(world, [world.outlet.card]))
    assert str(exc.value) == (
        "case policy lists 'Outlet One' (outlet) among its editors; editors must be editor cards"
    )
    with pytest.raises(FormatError, match=r"^case policy lists one of its editors twice$"):
        parse_policy(_with_switch(world, [world.editor.card, world.editor.card]))


def test_switch_unknown_field_is_refused(world):
    doc = _with_switch(world, [world.editor.card])
    doc["body"]["switch"]["pause"] = 1
    doc = sign_document("policy", doc["body"], world.reporter.sign_key)
    with pytest.raises(FormatError, match=r"^switch has an unknown field 'pause'$"):
        parse_policy(doc)


# --- envelopes: the sealed inner layer ---------------------------------------------------------


def _envelope_with_inner(w, mutate) -> dict:
    """An envelope whose sealed share body was changed by `mutate` and signed again."""
    (group,) = split(w.secret, w.spec)
    h = w.policy.holders[0]
    (env,) = make_envelopes(w.policy, h, group[h.member], w.reporter.sign_key)
    inner = {
        "v": 1,
        "case_id": w.policy.case_id,
        "policy_hash": w.policy.hash,
        "holder": h.id,
        "group": h.group,
        "member": h.member,
        "mnemonic": group[h.member],
    }
    mutate(inner)
    sealed = SealedBox(PublicKey(w.outlet.card.box_pk)).encrypt(
        canonical_json(sign_document("share", inner, w.reporter.sign_key))
    )
    body = dict(env["body"], sealed=b64e(bytes(sealed)))
    return sign_document("envelope", body, w.reporter.sign_key)


@pytest.fixture
def ew(world):
    return world


def test_sane_inner_layer_opens(ew):
    env = _envelope_with_inner(ew, lambda inner: None)
    assert open_envelope(env, ew.policy, ew.outlet.box_key).member == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda i: i.update(v=2), "unsupported sealed share version"),
        (lambda i: i.update(v="1"), "sealed share: field 'v' has the wrong type"),
        (lambda i: i.pop("v"), "sealed share lacks the field 'v'"),
        (lambda i: i.update(extra="x"), "sealed share has an unknown field 'extra'"),
    ],
)
def test_inner_layer_rules(ew, mutate, message):
    env = _envelope_with_inner(ew, mutate)
    with pytest.raises(FormatError) as exc:
        open_envelope(env, ew.policy, ew.outlet.box_key)
    assert str(exc.value) == message


def test_outer_layer_unknown_field(ew):
    env = _envelope_with_inner(ew, lambda inner: None)
    env = sign_document("envelope", dict(env["body"], note="x"), ew.reporter.sign_key)
    with pytest.raises(FormatError, match=r"^envelope has an unknown field 'note'$"):
        open_envelope(env, ew.policy, ew.outlet.box_key)
