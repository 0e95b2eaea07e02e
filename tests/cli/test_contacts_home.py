"""Contacts (show, remove, tables that never cut a fingerprint) and homes without an identity.

Issue 12 §6 and §8, through the real CLI (tests/cli/test_cli.py's runner and world).
"""

from __future__ import annotations

import pytest

from .test_cli import OPW, PW, Velador
from .test_cli import world as world  # the fixture, shared


@pytest.fixture
def v(capsys):
    return Velador(capsys)


def test_contact_show_and_remove(v, world, homes):
    # Given a contact the case names as recipient, and one no case names
    ed = homes("editor")
    v.ok(ed, "id", "new", "--name", "Editora Norte", "--role", "editor")
    ed_card = v.ok(ed, "id", "card").strip()
    v.ok(world.r, "contact", "add", ed_card, "--alias", "ed")
    sur = v.json(world.r, "contact", "show", "sur")
    # Then show gives one contact in full, with the cases that name it
    assert sur["name"] == "Diario Sur" and sur["role"] == "outlet"
    assert len(sur["fingerprint"]) == 19 and sur["cases"] == ["inv"]
    assert sur["card"] == v.ok(world.o, "id", "card", passphrase=OPW).strip()
    text = v.ok(world.r, "contact", "show", "sur")
    assert sur["fingerprint"] in text and "inv" in text
    # When a contact is removed, it is gone and the message names its fingerprint
    code, _, err = v(world.r, "contact", "remove", "ed")
    assert code == 0 and "Removed ed: Editora Norte (editor), fingerprint" in err
    assert [c["alias"] for c in v.json(world.r, "contact", "list")] == ["sur"]
    # Removing one a case names says the case keeps working, and the case still opens
    code, _, err = v(world.r, "contact", "remove", "sur")
    assert code == 0 and "still name this contact; they keep working" in err
    assert v.json(world.r, "case", "show", "inv")["case_id"] == world.case_id
    # And an unknown alias is an error naming it
    code, _, err = v(world.r, "contact", "show", "nadie")
    assert code == 66 and "no contact named 'nadie'" in err
    code, _, err = v(world.r, "contact", "remove", "sur")
    assert code == 66


@pytest.mark.parametrize("columns", ["120", "60", "40", "24"])
def test_contact_list_never_cuts_a_fingerprint(v, world, homes, monkeypatch, columns):
    # Given contacts with long names and a long URL, on a narrow terminal
    for i, name in enumerate(["Diario del Sur de Veracruz y Tabasco", "Semanario Zeta Tijuana"]):
        h = homes(f"o{i}")
        v.ok(h, "id", "new", "--name", name, "--role", "outlet")
        card = v.ok(h, "id", "card").strip()
        v.ok(world.r, "contact", "add", card, "--alias", f"outlet-number-{i}-long-alias")
    fps = [c["fingerprint"] for c in v.json(world.r, "contact", "list")]
    monkeypatch.setenv("COLUMNS", columns)
    # When the list is printed, every fingerprint is there whole, on one line, and nothing is cut
    out = v.ok(world.r, "contact", "list")
    assert "…" not in out
    for fp in fps:
        assert fp in out, (columns, fp, out)


def test_a_home_without_identity_is_refused(v, tmp_path):
    # Given a mistyped --home
    typo = tmp_path / "velador-hmoe"
    for args in (["case", "list"], ["status", "inv"], ["contact", "list"], ["inbox"]):
        code, out, err = v(typo, *args)
        # Then the command refuses, says why, and creates nothing
        assert code == 66, (args, err)
        assert err.splitlines()[0] == f"velador: error: there is no Velador identity in {typo}"
        assert "check --home (or VELADOR_HOME)" in err
        assert "No cases yet" not in out + err
        assert not typo.exists()
    # id new still makes one there, and help needs no identity
    v.ok(typo, "id", "new", "--name", "Rita Reporter")
    assert v(tmp_path / "other", "case", "list", "--help")[0] == 0
    assert PW  # the runner's default passphrase unlocked nothing here


def test_status_of_a_mistyped_case_suggests_the_closest_name(v, world):
    # Given a case named "inv" and another named "puerto"
    v.ok(
        world.r,
        "case",
        "create",
        "puerto",
        "--recipient",
        "sur",
        "--threshold",
        "1",
        "--shares",
        "1",
        "--offline-dir",
        world.tmp / "s2",
        "--store",
        f"file://{world.stores[0]}",
    )
    # When the reporter types "puerta"
    code, _, err = v(world.r, "status", "puerta")
    # Then the error names the case she probably meant, not case cards
    assert code == 66, err
    assert err.splitlines()[0] == "velador: error: no case named 'puerta'"
    assert "velador: hint: did you mean 'puerto'?" in err
    assert "card" not in err
