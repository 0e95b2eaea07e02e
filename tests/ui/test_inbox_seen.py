"""An editor's pages follow the CLI's rules, with real nodes on loopback and the app in process
(tests/ui/conftest.py):
- the browser's inbox and `velador inbox` share one "seen" cursor per node (vault/inbox.py):
  what one showed as new is not new for the other, and "show all" (`--all`) marks nothing;
- following a case by its bare id counts only the case's nodes, as `velador status CASE`
  (vault/switch.py foreign_status).
One test, so the armed case (the slow part) is made once."""

from __future__ import annotations

from tests.e2e.conftest import EPW
from tests.ui.conftest import opened, serving


def _editor_knows_the_nodes(v, armed, *more) -> None:
    for i, node in enumerate([*armed.nodes, *more]):
        card = v.ok(armed.editors[0], "node", "card", "--data", node.dir, passphrase=None)
        v.ok(
            armed.editors[0],
            "contact",
            "add",
            card.strip(),
            "--alias",
            f"n{i + 1}",
            passphrase=None,
        )


def _browser_inbox(srv, client, show_all: bool = False) -> str:
    r = client.post("/outlet/inbox", data={"all": "yes"} if show_all else {})
    assert r.status_code == 303, r.text
    return client.get("/outlet").text


def test_editor_inbox_and_status_in_the_browser_follow_the_clis_rules(armed, nodes, v, clock):
    editor = armed.editors[0]
    other = nodes("node-x")  # a node the editor knows, which does not hold this case
    _editor_knows_the_nodes(v, armed, other)
    v.ok(armed.r, "pause", "inv", "--until", "30d")  # "paused": a notice for the editors
    with serving(editor, clock, lang="en") as srv:
        c = opened(srv)
        assert c.post("/unlock", data={"passphrase": EPW}).status_code == 303
        # The browser shows the new notice, and marks it seen...
        page = _browser_inbox(srv, c)
        assert page.count("paused the switch") == 1, page
        assert "these are now marked as seen" in page
        # ...so the terminal's inbox has nothing new.
        code, out, err = v(editor, "inbox", passphrase=EPW)
        assert (code, out, err.strip()) == (0, "", "No new notices.")

        # The other way round: the terminal shows a new notice, then the browser has none.
        clock.advance(600)
        v.ok(armed.r, "resume", "inv")
        out = v.ok(editor, "inbox", passphrase=EPW)
        assert "resumed the switch" in out and "paused the switch" not in out
        page = _browser_inbox(srv, c)
        assert "No new notices." in page and "resumed the switch" not in page

        # "Show all" shows every notice and marks nothing, as `velador inbox --all`.
        clock.advance(600)
        v.ok(armed.r, "pause", "inv", "--until", "30d")
        page = _browser_inbox(srv, c, show_all=True)
        assert page.count("paused the switch") == 2 and "resumed the switch" in page
        assert "nothing was marked as seen" in page
        out = v.ok(editor, "inbox", passphrase=EPW)
        assert out.count("paused the switch") == 1 and "resumed the switch" not in out

        # Following the case by its bare id: node-x never heard of it and is not counted.
        c.post("/editor/status", data={"case": armed.case_id})
        page = c.get("/editor").text
        assert "3 of 3 answered" in page, page
