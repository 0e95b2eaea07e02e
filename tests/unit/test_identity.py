"""Identities at rest: unlock, wrong passphrase, duress slot, deniable file shape."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from vault.errors import AuthenticationError, FormatError
from vault.identity import (
    IDENTITY_FILE,
    create_identity,
    load_card,
    set_duress_passphrase,
    unlock_identity,
)


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "alice"
    create_identity(h, "Alice Reporter", "reporter", "correct horse", created=1_700_000_000)
    return h


def _slot_shape(slot: dict) -> tuple:
    return (
        tuple(sorted(slot)),
        slot["kdf"],
        slot["ops"],
        slot["mem"],
        len(slot["salt"]),
        len(slot["box"]),
    )


def test_create_then_unlock_gives_the_same_keys(home):
    # Given a fresh identity, when it is unlocked with its passphrase
    ident = unlock_identity(home, "correct horse")
    # Then the keys match the public card and the duress flag is off
    card = load_card(home)
    assert bytes(ident.sign_key.verify_key) == card.sign_pk
    assert bytes(ident.box_key.public_key) == card.box_pk
    assert ident.name == "Alice Reporter"
    assert ident.role == "reporter"
    assert ident.duress is False


def test_identity_file_is_private(home):
    assert stat.S_IMODE((home / IDENTITY_FILE).stat().st_mode) == 0o600


def test_refuses_to_overwrite_an_identity(home):
    with pytest.raises(FormatError, match="an identity already exists"):
        create_identity(home, "Other", "reporter", "x", created=1)


def test_empty_passphrase_is_refused(tmp_path):
    with pytest.raises(AuthenticationError, match="must not be empty"):
        create_identity(tmp_path / "h", "A", "reporter", "", created=1)


def test_wrong_passphrase(home):
    with pytest.raises(AuthenticationError) as exc:
        unlock_identity(home, "wrong horse")
    assert exc.value.message == "wrong passphrase for this identity"
    assert exc.value.exit_code == 77


def test_duress_slot_unlocks_same_keys_flagged(home):
    normal = unlock_identity(home, "correct horse")
    set_duress_passphrase(home, "correct horse", "under duress")
    d = unlock_identity(home, "under duress")
    n = unlock_identity(home, "correct horse")
    assert d.duress is True
    assert n.duress is False
    assert bytes(d.sign_key) == bytes(normal.sign_key) == bytes(n.sign_key)
    assert bytes(d.box_key) == bytes(normal.box_key)


def test_duress_must_differ_and_needs_normal_passphrase(home):
    with pytest.raises(AuthenticationError, match="must differ"):
        set_duress_passphrase(home, "correct horse", "correct horse")
    with pytest.raises(AuthenticationError, match="wrong passphrase"):
        set_duress_passphrase(home, "nope", "under duress")
    set_duress_passphrase(home, "correct horse", "under duress")
    with pytest.raises(AuthenticationError, match="must differ"):
        set_duress_passphrase(home, "under duress", "under duress")


def test_file_always_has_three_slots_of_equal_shape(home):
    # Deniability: the file looks the same whether or not a duress passphrase is set.
    before = json.loads((home / IDENTITY_FILE).read_text())
    assert before["v"] == 2
    assert len(before["slots"]) == 3
    assert len({_slot_shape(s) for s in before["slots"]}) == 1
    set_duress_passphrase(home, "correct horse", "under duress")
    after = json.loads((home / IDENTITY_FILE).read_text())
    assert len(after["slots"]) == 3
    assert {_slot_shape(s) for s in after["slots"]} == {_slot_shape(before["slots"][0])}
    assert set(before) == set(after)


def _opening_slot(home, passphrase) -> int:
    from vault.identity import _load_doc, _try_slot

    slots = _load_doc(home)["slots"]
    opened = [i for i, s in enumerate(slots) if _try_slot(s, passphrase) is not None]
    assert len(opened) == 1
    return opened[0]


def test_slot_order_is_random_over_identities(tmp_path):
    # Finding 3 (b): the normal and the duress slot are not at fixed places in the file.
    normal_at, duress_at = set(), set()
    for i in range(12):
        h = tmp_path / f"r{i}"
        create_identity(h, "R", "reporter", "normal pw", created=1)
        set_duress_passphrase(h, "normal pw", "duress pw")
        assert unlock_identity(h, "normal pw").duress is False
        assert unlock_identity(h, "duress pw").duress is True
        normal_at.add(_opening_slot(h, "normal pw"))
        duress_at.add(_opening_slot(h, "duress pw"))
    # With three slots in uniform random order, 12 identities all at one place: odds 3 * 3^-12.
    assert len(normal_at) > 1
    assert len(duress_at) > 1


def test_id_duress_under_duress_keeps_every_known_passphrase(home):
    # Finding 3 (a): a captor given the duress passphrase who "sets their own duress passphrase"
    # sees it work, their passphrase keeps working, and nothing says which is which.
    set_duress_passphrase(home, "correct horse", "under duress")
    before = json.loads((home / IDENTITY_FILE).read_text())
    set_duress_passphrase(home, "under duress", "captor's duress")
    after = json.loads((home / IDENTITY_FILE).read_text())
    assert unlock_identity(home, "correct horse").duress is False
    assert unlock_identity(home, "under duress").duress is True
    assert unlock_identity(home, "captor's duress").duress is True
    assert len(after["slots"]) == 3
    assert len({_slot_shape(s) for s in after["slots"]}) == 1
    # Exactly one slot survives byte for byte, as under the normal passphrase.
    kept = [s for s in after["slots"] if s in before["slots"]]
    assert len(kept) == 1
    # And again, from the captor's new passphrase: the normal one still opens normally.
    set_duress_passphrase(home, "captor's duress", "third")
    assert unlock_identity(home, "correct horse").duress is False
    assert unlock_identity(home, "third").duress is True


def test_id_duress_under_normal_keeps_one_slot_byte_for_byte(home):
    set_duress_passphrase(home, "correct horse", "under duress")
    before = json.loads((home / IDENTITY_FILE).read_text())
    set_duress_passphrase(home, "correct horse", "new duress")
    after = json.loads((home / IDENTITY_FILE).read_text())
    assert len([s for s in after["slots"] if s in before["slots"]]) == 1
    with pytest.raises(AuthenticationError, match="wrong passphrase"):
        unlock_identity(home, "under duress")
    assert unlock_identity(home, "new duress").duress is True


FROZEN = Path(__file__).parents[1] / "vectors" / "identity"


@pytest.mark.parametrize("name", ["v1-with-duress.json", "v1-no-duress.json"])
def test_frozen_version_1_files_still_open(tmp_path, name):
    # Version 1 (two slots, normal first), written by the previous release: still read, and
    # rewritten as version 2 by the next `id duress`, from either passphrase.
    home = tmp_path / "h"
    home.mkdir()
    shutil.copy(FROZEN / name, home / IDENTITY_FILE)
    n = unlock_identity(home, "normal passphrase v1")
    assert n.duress is False and n.name.startswith("Frozen V1")
    if name == "v1-with-duress.json":
        assert unlock_identity(home, "duress passphrase v1").duress is True
        set_duress_passphrase(home, "duress passphrase v1", "captor pw")
        assert unlock_identity(home, "duress passphrase v1").duress is True
    else:
        set_duress_passphrase(home, "normal passphrase v1", "captor pw")
    doc = json.loads((home / IDENTITY_FILE).read_text())
    assert doc["v"] == 2 and len(doc["slots"]) == 3
    assert unlock_identity(home, "normal passphrase v1").duress is False
    assert unlock_identity(home, "captor pw").duress is True
    assert bytes(unlock_identity(home, "captor pw").sign_key) == bytes(n.sign_key)


def test_tampered_card_in_identity_file_is_refused(home):
    path = home / IDENTITY_FILE
    doc = json.loads(path.read_text())
    card = doc["card"]
    mid = len(card) // 2
    doc["card"] = card[:mid] + ("A" if card[mid] != "A" else "B") + card[mid + 1 :]
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="malformed or has been altered"):
        unlock_identity(home, "correct horse")
    with pytest.raises(FormatError, match="malformed or has been altered"):
        load_card(home)


def test_card_of_another_identity_is_detected(home, tmp_path):
    other = tmp_path / "bob"
    create_identity(other, "Bob", "reporter", "pw", created=1)
    doc = json.loads((home / IDENTITY_FILE).read_text())
    doc["card"] = json.loads((other / IDENTITY_FILE).read_text())["card"]
    (home / IDENTITY_FILE).write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="keys do not match the card"):
        unlock_identity(home, "correct horse")


def test_wrong_slot_count_is_refused(home):
    path = home / IDENTITY_FILE
    doc = json.loads(path.read_text())
    doc["slots"] = doc["slots"][:1]
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="wrong number of key slots"):
        unlock_identity(home, "correct horse")


def test_missing_identity(tmp_path):
    from vault.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no identity in"):
        unlock_identity(tmp_path, "x")


def test_id_duress_runs_the_kdf_as_often_under_either_passphrase(tmp_path, monkeypatch):
    # Review of issue 11, finding 3: a filler slot was sealed without the KDF, so `id duress`
    # under the duress passphrase (two duress slots) ran Argon2id once more than under the
    # normal one (a duress slot and a filler): a captor timing it could tell.
    from vault import identity as idm

    calls = []
    real = idm._derive
    monkeypatch.setattr(idm, "_derive", lambda *a: calls.append(1) or real(*a))
    counts = []
    for which in ("normal", "duress"):
        home = tmp_path / which
        create_identity(home, "Ana", "reporter", "una frase de paso larga 1", 0)
        set_duress_passphrase(home, "una frase de paso larga 1", "otra frase distinta 22")
        calls.clear()
        given = "una frase de paso larga 1" if which == "normal" else "otra frase distinta 22"
        set_duress_passphrase(home, given, "una tercera frase 333")
        counts.append(len(calls))
    assert counts[0] == counts[1], counts
