"""`velador inbox` and `velador release request` against real node processes."""

from __future__ import annotations

import io
import json

from tests.node.builders import person


def test_inbox_shows_release_notices_once_then_keeps_a_cursor(armed, v):
    # Given a case released at both nodes, and an outlet that knows both nodes
    case = armed(n=2, threshold=2)
    case.release(*case.nodes)
    home = case.homes["outlet0"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    # When the outlet reads its inbox
    out, err = v.ok(home, "inbox")
    # Then one line for the release both nodes report, with the command to run next
    [line, nxt] = out.splitlines()
    assert line.endswith(
        "the case was released because the reporter released it. "
        f"Case {case.case_id}, reported by 2 of 2 nodes (node-a, node-b)."
    )
    assert nxt == (
        f"    next: velador --home {home} recover {case.case_id} --out recovered-{case.case_id[:8]}"
    )
    assert err == ""
    # And the next run shows nothing new (the cursor is durable: a new process, same home)
    out, err = v.ok(home, "inbox")
    assert out == "" and err.strip() == "No new notices."
    # And --all shows them again without moving the cursor
    out, _ = v.ok(home, "inbox", "--all")
    assert out.count("the case was released") == 1
    assert "reported by 2 of 2 nodes (node-a, node-b)." in out


def test_inbox_json(armed, v):
    case = armed(n=2, threshold=2)
    case.release(case.nodes[0])
    home = case.homes["outlet1"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    out, _ = v.ok(home, "inbox", "--json")
    doc = json.loads(out)
    assert doc["unreachable"] == []
    assert [(n["node_alias"], n["event"]) for n in doc["notices"]] == [("node-a", "released")]
    assert doc["notices"][0]["party"] == case.outlets[1].fingerprint


def test_inbox_with_one_node_down_warns_and_shows_the_others(armed, v):
    case = armed(n=2, threshold=2)
    case.release(*case.nodes)
    home = case.homes["outlet0"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    down = case.nodes[1]
    down.kill()
    code, out, err = v(home, "inbox", "--timeout", "3")
    assert code == 0, err
    assert out.count("the case was released") == 1 and "reported by 1 of 2 nodes (node-a)." in out
    assert err.strip() == (
        "velador: warning: node node-b is unreachable (ConnectError); its notices come on "
        "the next run"
    )
    # When the node comes back, its notice is still new (its cursor did not move)
    down.start()
    out, _ = v.ok(home, "inbox")
    assert out.count("the case was released") == 1 and "reported by 1 of 2 nodes (node-b)." in out


def test_inbox_from_unreachable_nodes_only_is_an_error(armed, v):
    case = armed(n=1, threshold=1)
    home = case.homes["outlet0"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    case.nodes[0].kill()
    code, _, err = v(home, "inbox", "--timeout", "3")
    assert code == 69
    assert err.strip().splitlines()[-2:] == [
        "velador: error: none of your 1 node(s) could be asked for notices: node node-a is "
        "unreachable (ConnectError)",
        "velador: hint: check your network connection (or Tor), then run 'velador inbox' again",
    ]


def test_inbox_without_known_nodes(v, tmp_path):
    person(tmp_path / "h", "Diario", "outlet")
    code, _, err = v(tmp_path / "h", "inbox")
    assert code == 66
    assert err.strip().splitlines() == [
        "velador: error: you know no escrow node to ask for notices",
        "velador: hint: add the case's nodes: velador contact add NODE_CARD --alias NAME",
    ]


def test_editor_release_request_reaches_every_node_and_the_editor_is_told(armed, v):
    # Given a case with editor quorum 1 and an objection window
    case = armed(n=2, threshold=2)
    home = case.homes["editor"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    # When the editor asks for a release, the reason in a file (out of shell history)
    reason = case.homes["editor"].parent / "motivo.txt"
    reason.write_text("detenida desde ayer\n", encoding="utf-8")
    out, err = v.ok(home, "release", "request", case.case_id, "--reason-file", reason, "--yes")
    # Then every node accepted it and the window is open
    assert f"Release requested at all 2 nodes of case {case.case_id}." in err
    assert err.count("accepted (state EDITOR_PENDING, release at ") == 2
    for node in case.nodes:
        node.wait_state(case.case_id, "EDITOR_PENDING")
    # And the editor's inbox shows the pending release
    out, _ = v.ok(home, "inbox")
    assert out.count("editors asked for a release; it happens at") == 1
    assert "reported by 2 of 2 nodes (node-a, node-b)." in out
    # And `velador status` (a case the editor does not own) shows the quorum and the window
    out, _ = v.ok(home, "status", case.case_id)
    assert f"({case.case_id}): you are not its reporter" in out
    assert "editor release pending (1 of 1 editors asked); the nodes release at" in out
    info = json.loads(v.ok(home, "status", case.case_id, "--json")[0])
    [st] = info["cases"]
    assert st["case_id"] == case.case_id
    assert [n["state"] for n in st["nodes"]] == ["EDITOR_PENDING"] * 2
    assert {n["editor_requests"] for n in st["nodes"]} == {1}


def test_status_of_a_case_nobody_you_know_holds(armed, v):
    case = armed(n=1, threshold=1)
    home = case.homes["editor"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    code, _, err = v(home, "status", "ffffffffffffffff")
    assert code == 66
    assert err.strip().splitlines()[-2:] == [
        "velador: error: no escrow node you know has case ffffffffffffffff",
        "velador: hint: ask the reporter for the case card, or add the case's nodes as contacts",
    ]


def test_an_editor_not_in_the_policy_is_refused(armed, v):
    case = armed(n=2, threshold=2)
    home = case.homes["outsider"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    code, _, err = v(home, "release", "request", case.case_id, "--reason", "x", "--yes")
    # The nodes give a key outside the case the unknown-case answer (protocol §2.4).
    assert code == 66
    assert err.strip().splitlines()[-2:] == [
        f"velador: error: none of the 2 node(s) asked holds case {case.case_id}",
        "velador: hint: check the case id, or use the case card the reporter gave you; nodes "
        "answer the same way to an editor the reporter did not name (your fingerprint is "
        f"{case.outsider.fingerprint})",
    ]
    for node in case.nodes:
        assert node.state(case.case_id) == "ARMED"


def test_release_request_with_a_node_down_counts_where_it_arrived(armed, v):
    case = armed(n=2, threshold=2)
    home = case.homes["editor"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    case.nodes[1].kill()
    code, _, err = v(
        home, "release", "request", case.case_id, "--reason", "x", "--yes", "--timeout", "3"
    )
    assert code == 69
    assert err.strip().splitlines()[-2:] == [
        f"velador: error: your request reached 1 of the 2 nodes of case {case.case_id}; "
        "not accepted by node-b (unreachable)",
        "velador: hint: it counts at the nodes that accepted it; run the command again later",
    ]
    case.nodes[0].wait_state(case.case_id, "EDITOR_PENDING")


def test_release_request_for_an_unknown_case(armed, v):
    case = armed(n=1, threshold=1)
    home = case.homes["editor"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    code, _, err = v(home, "release", "request", "ffffffffffffffff", "--reason", "x", "--yes")
    assert code == 66
    assert err.strip().splitlines()[0] == (
        "velador: error: none of the 1 node(s) asked holds case ffffffffffffffff"
    )


def test_release_request_reason_from_standard_input_and_its_bad_forms(v, tmp_path, monkeypatch):
    home = tmp_path / "h"
    person(home, "Editora", "editor")
    cid = "ffffffffffffffff"
    # Both ways at once: refused before anything is sent
    f = tmp_path / "why.txt"
    f.write_text("detenido", encoding="utf-8")
    code, _, err = v(home, "release", "request", cid, "--reason-file", f, "--reason", "x")
    assert code == 75
    assert "give the reason once: --reason-file or --reason, not both" in err
    # A file with only blanks says nothing: refused, so the file was read
    f.write_text("  \n\n", encoding="utf-8")
    code, _, err = v(home, "release", "request", cid, "--reason-file", f)
    assert code == 75
    assert "the reason must say why, in 1 to 1000 characters" in err
    # Neither, and no terminal to ask on: a clear error naming the file option
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = v(home, "release", "request", cid)
    assert code == 75
    assert err.strip().splitlines()[-2:] == [
        "velador: error: say why you ask for the release",
        "velador: hint: use --reason-file FILE (or '-' to read standard input), or run the "
        "command in a terminal to be asked",
    ]
    # From standard input ('-'): read, then the command goes on to look for the case's nodes
    monkeypatch.setattr("sys.stdin", io.StringIO("detenido desde el 12\n"))
    code, _, err = v(home, "release", "request", cid, "--reason-file", "-")
    assert code == 66  # past the reason, to the case's nodes, of which this home knows none
    assert "you know no escrow node to ask about case ffffffffffffffff" in err
