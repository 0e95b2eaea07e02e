"""SLIP-39 splitting and share envelopes: combine, typos, non-recipients, tampering, forgery."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from nacl.signing import SigningKey

from vault.case import plan_holders
from vault.encoding import b64e
from vault.envelope import check_envelope, make_envelopes, open_envelope
from vault.errors import AuthenticationError, FormatError, ShareError
from vault.identity import create_identity
from vault.policy import Policy, sign_policy
from vault.shares import (
    ShareSpec,
    age_recipient_str,
    check_mnemonic,
    combine,
    combine_any,
    new_release_secret,
    parse_groups,
    split,
)
from vault.signing import sign_document


def test_k_of_n_combines_with_any_k():
    secret = new_release_secret()
    (group,) = split(secret, ShareSpec(1, ((3, 5),)))
    assert len(group) == 5
    assert combine(group[:3]) == secret
    assert combine([group[4], group[1], group[2]]) == secret
    with pytest.raises(ShareError, match="the shares do not combine"):
        combine(group[:2])


def test_two_level_groups_combine():
    secret = new_release_secret()
    spec = parse_groups("2of3,2of2", 2)
    assert spec == ShareSpec(2, ((2, 3), (2, 2)))
    g1, g2 = split(secret, spec)
    assert combine([g1[0], g1[2], g2[0], g2[1]]) == secret
    with pytest.raises(ShareError):
        combine([g1[0], g1[2], g2[0]])  # second group short


def test_combine_any_skips_extra_and_finds_the_key():
    secret = new_release_secret()
    other = new_release_secret()
    (good,) = split(secret, ShareSpec(1, ((2, 3),)))
    (bad,) = split(other, ShareSpec(1, ((2, 3),)))
    got, used = combine_any([bad[0], good[0], good[1]], age_recipient_str(secret))
    assert got == secret
    assert bad[0] not in used


def test_share_with_a_typo_is_a_format_error():
    (group,) = split(new_release_secret(), ShareSpec(1, ((2, 3),)))
    words = group[0].split()
    words[5] = "academic" if words[5] != "academic" else "acid"
    with pytest.raises(FormatError, match="share is not a valid SLIP-39 mnemonic"):
        check_mnemonic(" ".join(words))


@pytest.mark.parametrize(
    ("text", "gt", "msg"),
    [
        ("2x3", None, "cannot read group"),
        ("4of3", None, "is not possible"),
        ("1of3", None, "does not allow a threshold of 1"),
        ("2of3,2of2", 3, "group threshold must be between"),
    ],
)
def test_bad_share_specs(text, gt, msg):
    with pytest.raises(ShareError, match=msg):
        parse_groups(text, gt)


# --- envelopes -----------------------------------------------------------------------------


@pytest.fixture
def setup(tmp_path):
    reporter = create_identity(tmp_path / "r", "Rita", "reporter", "pw", created=1)
    outlet = create_identity(tmp_path / "o", "Outlet One", "outlet", "pw", created=1)
    stranger = create_identity(tmp_path / "s", "Stranger", "outlet", "pw", created=1)
    secret = new_release_secret()
    spec = ShareSpec(1, ((2, 3),))
    policy = sign_policy(
        Policy(
            case_id="c0ffee" * 3 + "ab",
            created=1,
            reporter=reporter.card,
            recipients=(outlet.card,),
            release_recipient=age_recipient_str(secret),
            spec=spec,
            holders=plan_holders(spec, []),
            stores=("file:///tmp/nowhere",),
        ),
        reporter.sign_key,
    )
    (group,) = split(secret, spec)
    h = policy.holders[0]
    (env,) = make_envelopes(policy, h, group[h.member], reporter.sign_key)
    return reporter, outlet, stranger, policy, env, group


def test_recipient_opens_its_envelope(setup):
    _, outlet, _, policy, env, group = setup
    opened = open_envelope(env, policy, outlet.box_key)
    assert opened.mnemonic == group[0]
    assert opened.holder == policy.holders[0].id


def test_envelope_survives_json_round_trip(setup):
    _, outlet, _, policy, env, _ = setup
    assert open_envelope(json.dumps(env), policy, outlet.box_key).member == 0


def test_non_recipient_cannot_open(setup):
    _, _, stranger, policy, env, _ = setup
    with pytest.raises(AuthenticationError, match="envelope cannot be opened with this identity"):
        open_envelope(env, policy, stranger.box_key)


def test_altered_sealed_bytes_are_detected(setup):
    _, outlet, _, policy, env, _ = setup
    bad = copy.deepcopy(env)
    raw = bytearray(base64.urlsafe_b64decode(bad["body"]["sealed"] + "=="))
    raw[len(raw) // 2] ^= 1
    bad["body"]["sealed"] = b64e(bytes(raw))
    with pytest.raises(AuthenticationError, match="share envelope has an invalid signature"):
        open_envelope(bad, policy, outlet.box_key)


def test_altered_sealed_bytes_resigned_by_reporter_fail_decryption(setup):
    reporter, outlet, _, policy, env, _ = setup
    body = copy.deepcopy(env["body"])
    raw = bytearray(base64.urlsafe_b64decode(body["sealed"] + "=="))
    raw[-5] ^= 1
    body["sealed"] = b64e(bytes(raw))
    bad = sign_document("envelope", body, reporter.sign_key)
    with pytest.raises(AuthenticationError, match="cannot be opened"):
        open_envelope(bad, policy, outlet.box_key)


def test_envelope_resigned_by_a_forger_is_refused(setup):
    _, outlet, _, policy, env, _ = setup
    forged = sign_document("envelope", env["body"], SigningKey.generate())
    with pytest.raises(AuthenticationError, match="share envelope was signed by an unexpected key"):
        open_envelope(forged, policy, outlet.box_key)
    with pytest.raises(AuthenticationError):
        check_envelope(forged, policy)


def test_envelope_for_another_holder_slot_is_refused(setup):
    # Outer layer relabelled to another holder (re-signed by the reporter's key): inner disagrees.
    reporter, outlet, _, policy, env, _ = setup
    body = dict(env["body"], holder=policy.holders[1].id)
    bad = sign_document("envelope", body, reporter.sign_key)
    with pytest.raises(AuthenticationError, match="does not match its envelope"):
        open_envelope(bad, policy, outlet.box_key)


def test_envelope_of_another_case_is_refused(setup):
    reporter, outlet, _, policy, env, _ = setup
    body = dict(env["body"], case_id="0" * 20)
    bad = sign_document("envelope", body, reporter.sign_key)
    with pytest.raises(FormatError, match="envelope belongs to another case"):
        open_envelope(bad, policy, outlet.box_key)
