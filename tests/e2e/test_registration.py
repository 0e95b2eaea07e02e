"""A reporter at a node with closed registration (docs/guide-reporter.md, "Invitations"): the
real `velador case create` / `case arm` against real node processes, the code given to the
`--invite` option on standard input (never on the command line)."""

from __future__ import annotations

import io
import sys

from .conftest import create_args


def test_closed_node_refuses_then_an_invitation_arms_the_case(
    v, people, nodes, tmp_path, monkeypatch
):
    # Given two nodes, the second one closed to unknown keys
    ns = [nodes("node-a"), nodes("node-b", registration={"mode": "closed"})]
    for i, node in enumerate(ns):
        card = v.ok(people.r, "node", "card", "--data", node.dir, passphrase=None).strip()
        v.ok(people.r, "contact", "add", card, "--alias", f"n{i + 1}")
    # When the reporter creates a case without an invitation, the closed node refuses and the
    # CLI says what to do
    line, hint = v.fails(people.r, *create_args(2, tmp_path), code=69)
    assert line.startswith("velador: error: case inv is NOT armed: 1 of 2 nodes have it; node-b ")
    assert "accepts new cases only from reporters its operator admitted" in line
    assert hint == (
        "velador: hint: ask the operator of node-b for an invitation code, then run "
        "'velador case arm inv --invite NODE'"
    )
    # When the operator makes an invitation and the reporter enters it (standard input)
    code = v.ok(people.r, "node", "invite", "--data", ns[1].dir, passphrase=None).strip()
    monkeypatch.setattr(sys, "stdin", io.StringIO(code + "\n"))
    rep = v.json(people.r, "case", "arm", "inv", "--invite", "n2")
    # Then the case is armed at both nodes and her check-ins work there
    assert rep["armed"] is True
    case_id = rep["case_id"]
    assert all(n.state(case_id) == "ARMED" for n in ns)
    v.ok(people.r, "checkin", "inv")
    assert ns[1].query("SELECT seq FROM cases")[0][0] > 0  # her heartbeat arrived
    # and the code is not in anything the CLI printed or stored on her machine
    secret = code.split(".")[1]
    for f in people.r.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_invite_without_a_code_on_stdin_is_a_clear_error(v, people, nodes, tmp_path, monkeypatch):
    node = nodes("node-a", registration={"mode": "closed"})
    card = v.ok(people.r, "node", "card", "--data", node.dir, passphrase=None).strip()
    v.ok(people.r, "contact", "add", card, "--alias", "n1")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    args = create_args(1, tmp_path, "--invite", "n1")
    args[args.index("--threshold") + 1] = "1"
    line, hint = v.fails(people.r, *args, code=75)
    assert line == "velador: error: no invitation code for node n1 on standard input"
    assert hint == "velador: hint: give one code per line, in the order of the --invite options"
