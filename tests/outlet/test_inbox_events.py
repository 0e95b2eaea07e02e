"""`velador inbox` in the reader's words (issue 12 §7), against real node processes.

One line per event ("2 of 3 nodes"), the reporter named from the reader's contacts, the
reporter's own case by its name, and a suggested command that works when run as written.
"""

from __future__ import annotations

import io
import os
import shlex
import time

from cli.main import main
from tests.node.builders import PASS
from vault.identity import set_duress_passphrase
from vault.state import LocalState

from .conftest import same_tree

DURESS = "umbrella quarry violet harbor"


def run_line(command: str, passphrase: str = PASS) -> int:
    """Run a command line exactly as the inbox printed it (minus the leading 'velador')."""
    args = shlex.split(command)
    assert args[0] == "velador"
    old = os.environ.get("VELADOR_PASSPHRASE")
    os.environ["VELADOR_PASSPHRASE"] = passphrase
    try:
        main(args[1:])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        if old is None:
            os.environ.pop("VELADOR_PASSPHRASE", None)
        else:
            os.environ["VELADOR_PASSPHRASE"] = old
    return 0


def test_a_release_is_one_line_naming_the_reporter_and_its_command_works(
    armed, v, tmp_path, monkeypatch, capsys
):
    # Given a case on 3 nodes, released by its reporter, and an outlet that has the reporter
    # as a contact "ana" and the nodes as contacts
    case = armed(n=3, threshold=2)
    home = case.homes["outlet0"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    v.ok(home, "contact", "add", case.reporter.card.text, "--alias", "ana")
    case.release(*case.nodes)
    # When the outlet reads its inbox
    out, _ = v.ok(home, "inbox")
    lines = out.splitlines()
    # Then one line names the reporter and counts the nodes, and the next command is complete
    assert len(lines) == 2, out
    assert lines[0].split("  ", 1)[1] == (
        "Ana Reportera (ana): the case was released because the reporter released it. "
        f"Case {case.case_id}, reported by 3 of 3 nodes (node-a, node-b, node-c)."
    )
    command = lines[1].removeprefix("    next: ")
    assert command == (
        f"velador --home {home} recover {case.case_id} --out recovered-{case.case_id[:8]}"
    )
    # And that command, run exactly as written, recovers the material
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert run_line(command) == 0, capsys.readouterr().err
    assert same_tree(case.source, tmp_path / f"recovered-{case.case_id[:8]}" / case.source.name)

    # And the reporter's own inbox names the case by its name, with no bare case id
    rhome = case.homes["reporter"]
    case.add_nodes_as_contacts(v, rhome, case.nodes)
    out, _ = v.ok(rhome, "inbox")
    line, nxt = out.splitlines()
    assert line.split("  ", 1)[1] == (
        "puerto: your case was released because you released it. "
        "Reported by 3 of 3 nodes (node-a, node-b, node-c)."
    )
    assert case.case_id not in line
    assert nxt == f"    next: velador --home {rhome} status puerto"


def test_the_editors_duress_alarm_names_the_reporter(armed, v, capsys):
    # Given an editor with the reporter as contact "ana", and a reporter with a duress passphrase
    case = armed(n=2, threshold=2)
    ed = case.homes["editor"]
    case.add_nodes_as_contacts(v, ed, case.nodes)
    v.ok(ed, "contact", "add", case.reporter.card.text, "--alias", "ana")
    rhome = case.homes["reporter"]
    set_duress_passphrase(rhome, PASS, DURESS)
    state = LocalState(rhome)  # the fixture registered the case through the library
    for node in case.nodes:
        state.set_node_reg(case.policy, node.card, "registered", None, int(time.time()))
    # When the reporter is forced to check in with the duress passphrase
    code = run_line(f"velador --home {shlex.quote(str(rhome))} checkin puerto", DURESS)
    assert code == 0, capsys.readouterr().err
    # Then the editor's inbox has one alarm line naming her, counted over both nodes
    out, _ = v.ok(ed, "inbox")
    [line, nxt] = out.splitlines()
    assert line.split("  ", 1)[1] == (
        "Ana Reportera (ana) checked in with the duress passphrase: treat the reporter as being "
        "under coercion, and do not reply through the reporter's devices. "
        f"Case {case.case_id}, reported by 2 of 2 nodes (node-a, node-b)."
    )
    assert nxt == f"    next: velador --home {ed} status {case.case_id}"


def test_a_reporter_not_in_contacts_is_named_by_fingerprint(armed, v):
    case = armed(n=1, threshold=1)
    home = case.homes["outlet1"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    case.release(*case.nodes)
    out, _ = v.ok(home, "inbox")
    assert (
        out.splitlines()[0]
        .split("  ", 1)[1]
        .startswith(
            f"The reporter with fingerprint {case.reporter.fingerprint} (not in your contacts): "
            "the case was released"
        )
    )


class Terminal(io.StringIO):
    """Standard input that says it is a terminal, with the person's answers in it."""

    def isatty(self) -> bool:
        return True


def test_release_request_asks_first_and_no_sends_nothing(armed, v, monkeypatch):
    # Given an editor who knows the case's nodes, the reason in a file
    case = armed(n=2, threshold=2)
    home = case.homes["editor"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    reason = home.parent / "motivo.txt"
    reason.write_text("no llegó a la cita\n", encoding="utf-8")
    ask = ("release", "request", case.case_id, "--reason-file", reason)
    # Without a terminal and without --yes: refused before anything is sent
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = v(home, *ask)
    assert code == 75
    assert err.splitlines() == [
        "velador: error: refusing to ask for a release without confirmation",
        "velador: hint: add --yes once you are sure of the case id",
    ]
    # At a terminal, answering "n": exit 0, a calm line, and the nodes are still watching
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, _, err = v(home, *ask)
    assert code == 0, err
    assert f"Send a release request for case {case.case_id} to 2 escrow nodes?" in err
    assert err.rstrip().endswith("[y/N]: Nothing was sent.")
    assert [n.state(case.case_id) for n in case.nodes] == ["ARMED", "ARMED"]
    # Answering "y" sends it
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, _, err = v(home, *ask)
    assert code == 0, err
    for node in case.nodes:
        node.wait_state(case.case_id, "EDITOR_PENDING")
