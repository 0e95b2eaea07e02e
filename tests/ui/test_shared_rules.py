"""The browser app uses the CLI's rules through shared, public functions (issue 15: "no second
implementation of any rule"): vault/ for rules, click-free cli modules for wording."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.node.builders import person
from tests.ui.conftest import with_identity

UI = Path(__file__).resolve().parents[2] / "cli" / "ui"


def test_the_ui_imports_no_private_name_of_the_cli():
    """A private CLI name (`_cards`, `_Asked`) is an implementation the CLI may change at any time;
    what the app needs lives in vault/ or in a public, click-free cli module."""
    found = []
    for path in sorted(UI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 2:  # from ..something
                found += [
                    f"{path.name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "_"  # `_` is gettext
                ]
    assert not found, found


def test_wizard_refuses_a_contact_of_another_role_with_the_clis_words_in_spanish(ui, tmp_path):
    # Given an outlet in the reporter's contacts
    c = with_identity(ui)
    outlet = person(tmp_path / "o", "Diario del Sur", "outlet")
    r = c.post("/contacts/add", data={"card": outlet.card.text, "alias": "sur"})
    assert r.status_code == 303
    # When the wizard is asked to make it an escrow node (a crafted form)
    r = c.post("/cases/new", data={"name": "inv", "node": "sur", "recipient": "sur"})
    # Then vault/caseplan.py refuses it, its role said in Spanish as the CLI says it
    assert r.status_code == 400
    assert "sur no es un nodo (su papel es medio)" in r.text


def test_a_refused_welcome_form_says_why_once(ui):
    """A page rendered at once with its own notices and values (cli/ui/app.py render) used to
    fail with a 500: `notices` was passed twice, and `name` clashed with the template's name."""
    from tests.ui.conftest import opened

    c = opened(ui)
    r = c.post("/welcome", data={"name": "Rita", "passphrase": "a", "passphrase2": "b"})
    assert r.status_code == 400
    assert r.text.count("Las dos frases de paso no son iguales") == 1
    assert "Las dos frases" not in c.get("/welcome").text  # not shown again on the next page


def test_the_strength_meter_judges_as_id_new_does(ui):
    """ "outlet luna" scores 3 with only the name as a known word, 2 once the role is one too:
    the meter counts the words `velador id new` counts (vault/passphrase.py strength), so it
    never calls strong a passphrase the form then refuses."""
    from tests.ui.conftest import opened

    c = opened(ui)
    r = c.post("/strength", data={"passphrase": "outlet luna", "name": "Rita", "role": "outlet"})
    assert r.json()["ok"] is False
    r = c.post(
        "/welcome",
        data={
            "name": "Rita",
            "role": "outlet",
            "passphrase": "outlet luna",
            "passphrase2": "outlet luna",
        },
    )
    assert r.status_code == 400  # refused, as the meter said
