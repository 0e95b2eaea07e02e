"""Recovery by a bare case id (issue 11, finding 6): which policy is trusted, and saying so.

A policy signed by a reporter in the outlet's contacts wins over whatever most nodes serve
(tests/outlet/test_recover_nodes.py has the forged-majority case); when nothing vouches for the
policy (no case card, reporter not a contact) the output says plainly that the majority chose
it and asks the reader to verify the reporter's fingerprint."""

from __future__ import annotations

import json

from .test_recover_nodes import recover

MAJORITY = "The case policy was chosen by majority"


def test_a_bare_id_with_an_unknown_reporter_says_the_majority_chose_the_policy(armed, v, tmp_path):
    # Given a released case and an outlet that knows the nodes but not the reporter
    case = armed(n=3, threshold=2)
    case.release(*case.nodes)
    home = case.homes["outlet0"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    # When it recovers by the case id alone
    code, stdout, stderr = recover(v, case, "outlet0", tmp_path / "o")
    # Then the files come back, and the output says the majority chose the policy and names the
    # fingerprint to verify
    assert code == 0, stderr
    text = " ".join(stdout.split())
    assert f"{MAJORITY}: 3 of the 3 nodes that released serve it" in text
    assert f"Verify the reporter's fingerprint {case.reporter.fingerprint}" in text
    code, stdout, stderr = recover(v, case, "outlet0", tmp_path / "o2", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["policy_choice"] == {"by": "majority", "agreeing": 3, "serving": 3}


def test_a_reporter_in_the_contacts_vouches_for_the_policy(armed, v, tmp_path):
    # Given the same, with the reporter in the outlet's contacts
    case = armed(n=2, threshold=2)
    case.release(*case.nodes)
    home = case.homes["outlet0"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    v.ok(home, "contact", "add", case.reporter.card.text, "--alias", "ana")
    # When it recovers by the case id alone
    code, stdout, stderr = recover(v, case, "outlet0", tmp_path / "o")
    # Then the contact vouches for the policy: no majority warning
    assert code == 0, stderr
    assert "your contact 'ana'" in stdout
    assert MAJORITY not in stdout
    code, stdout, stderr = recover(v, case, "outlet0", tmp_path / "o2", "--json")
    assert json.loads(stdout)["policy_choice"]["by"] == "contact"
