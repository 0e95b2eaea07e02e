"""Spanish errors whose values came from vault/ or a node in English (issue 15's language
fixes): the values are Notes (vault/errors.py) and are said in Spanish with the sentence."""

from __future__ import annotations


def test_node_outcomes_and_errors_inside_spanish_errors_are_spanish(armed, v, tmp_path):
    case = armed(n=2, threshold=2)
    home = case.homes["outlet0"]
    case.add_nodes_as_contacts(v, home, case.nodes)
    # Recovering before any release: each node's outcome, in Spanish (vault/netrecover.py _names)
    code, _, stderr = v(home, "--lang", "es", "recover", case.case_id, "--out", tmp_path / "o")
    assert code == 66
    assert stderr.strip().splitlines()[0] == (
        f"velador: error: ningún nodo ha liberado todavía el caso {case.case_id}: node-a (no ha "
        "liberado: el caso todavía no se ha liberado (estado ARMED)), node-b (no ha liberado: "
        "el caso todavía no se ha liberado (estado ARMED))"
    )
    # The inbox with every node down: each node's error, in Spanish (cli/outlet_cmds.py inbox)
    for node in case.nodes:
        node.kill()
    code, _, err = v(home, "--lang", "es", "inbox", "--timeout", "3")
    assert code == 69
    assert err.strip().splitlines()[-2] == (
        "velador: error: no se pudo consultar ninguno de tus nodos (2): no se pudo contactar al "
        "nodo node-a (ConnectError); no se pudo contactar al nodo node-b (ConnectError)"
    )
