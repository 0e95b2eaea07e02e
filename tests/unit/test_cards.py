"""Contact cards: one line, self-signed, any change detected."""

from __future__ import annotations

import base64
import json

import pytest
from nacl.signing import SigningKey

from vault.cards import fingerprint, make_card, parse_card
from vault.constants import CARD_PREFIX
from vault.encoding import b64e, canonical_json
from vault.errors import FormatError
from vault.signing import sign_document

BAD = "this contact card is malformed or has been altered"


@pytest.fixture
def key():
    return SigningKey.generate()


@pytest.fixture
def card(key):
    return make_card("Diario Sur", "outlet", key, bytes(32 * [7]), 1_700_000_000)


def test_card_round_trips(card):
    parsed = parse_card(card.text)
    assert parsed == card
    assert card.text.startswith(CARD_PREFIX)
    assert "\n" not in card.text


def test_fingerprint_is_four_groups_of_four(card):
    fp = card.fingerprint
    assert len(fp) == 19
    assert [len(g) for g in fp.split("-")] == [4, 4, 4, 4]
    assert fp == fingerprint(card.sign_pk, card.box_pk)


def test_surrounding_whitespace_is_tolerated(card):
    assert parse_card(f"  {card.text}\n") == card


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_any_flipped_character_is_refused(card, where):
    text = card.text
    i = len(CARD_PREFIX) + int((len(text) - len(CARD_PREFIX)) * where)
    tampered = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]
    with pytest.raises(FormatError) as exc:
        parse_card(tampered)
    assert exc.value.message == BAD
    assert exc.value.exit_code == 65


@pytest.mark.parametrize(
    "text", ["", "hello", "velador:card:v2:abc", CARD_PREFIX, CARD_PREFIX + "!!!", "x" * 5000]
)
def test_garbage_is_refused(text):
    with pytest.raises(FormatError, match=BAD):
        parse_card(text)


def test_card_signed_by_another_key_is_refused(card, key):
    # Re-sign the same body with a forger's key: the signer no longer is the announced key.
    doc = json.loads(base64.urlsafe_b64decode(card.text[len(CARD_PREFIX) :] + "=="))
    forged = sign_document("card", doc["body"], SigningKey.generate())
    with pytest.raises(FormatError, match=BAD):
        parse_card(CARD_PREFIX + b64e(canonical_json(forged)))


def test_card_with_changed_name_resigned_by_owner_is_a_new_valid_card(card, key):
    doc = json.loads(base64.urlsafe_b64decode(card.text[len(CARD_PREFIX) :] + "=="))
    body = dict(doc["body"], name="Someone Else")
    text = CARD_PREFIX + b64e(canonical_json(sign_document("card", body, key)))
    assert parse_card(text).name == "Someone Else"


def test_unknown_role_field_is_refused(card, key):
    doc = json.loads(base64.urlsafe_b64decode(card.text[len(CARD_PREFIX) :] + "=="))
    body = dict(doc["body"], extra=1)
    text = CARD_PREFIX + b64e(canonical_json(sign_document("card", body, key)))
    with pytest.raises(FormatError, match=BAD):
        parse_card(text)


def test_control_characters_in_names_are_refused(key):
    with pytest.raises(FormatError, match="control characters"):
        make_card("bad\x07name", "outlet", key, bytes(32), 1)
