"""The editor's page follows a case with `velador status CASE`'s rule (vault/switch.py
foreign_status): given a bare case id, a node you know that never heard of the case is not one
of its nodes, and is not counted as a node that did not answer."""

from __future__ import annotations

from tests.e2e.conftest import EPW
from tests.ui.conftest import opened, serving


def test_editor_status_by_case_id_counts_only_the_cases_nodes(armed, nodes, v, clock):
    editor = armed.editors[0]
    other = nodes("node-x")  # a node the editor knows, which does not hold this case
    for i, node in enumerate([*armed.nodes, other]):
        card = v.ok(editor, "node", "card", "--data", node.dir, passphrase=None).strip()
        v.ok(editor, "contact", "add", card, "--alias", f"n{i + 1}", passphrase=None)
    with serving(editor, clock, lang="en") as srv:
        c = opened(srv)
        assert c.post("/unlock", data={"passphrase": EPW}).status_code == 303
        c.post("/editor/status", data={"case": armed.case_id})
        page = c.get("/editor").text
    assert "3 of 3 answered" in page, page
