"""Grouping of node notices into events (cli/inbox_view.py): what makes one line."""

from __future__ import annotations

from cli.inbox_view import GROUP_GAP, Names, describe, group

CASE = "3f9a2c1e4b5d6e7f8a9b"


def notice(node: str, t: int, event: str = "reminder", **extra) -> dict:
    return {
        "node_alias": node,
        "case_id": CASE,
        "event": event,
        "to": "reporter",
        "time": t,
        "nodes": 3,
        **extra,
    }


def test_one_event_from_several_nodes_is_one_group():
    evs = group([notice("b", 105), notice("a", 100), notice("c", 100 + GROUP_GAP)])
    assert [(e.event, e.nodes) for e in evs] == [("reminder", ["a", "b", "c"])]


def test_the_next_occurrence_is_a_new_line():
    # The same node twice, or the same event long after, is another occurrence
    evs = group([notice("a", 100), notice("a", 110), notice("b", 100 + 3600)])
    assert [e.nodes for e in evs] == [["a"], ["a"], ["b"]]


def test_hostile_values_are_ignored_not_shown():
    # A node that claims "nodes": "many" or a non-integer time gets no count from it
    ev = group([notice("a", 100, nodes="many", deadline="soon")])[0]
    line, nxt = describe(ev, Names([], {CASE: "puerto"}, ""))
    assert line == "puerto: your check-in is due by -. Reported by 1 node (a)."
    assert nxt == "velador checkin puerto"


def test_an_event_reads_in_spanish_with_local_times(monkeypatch):
    # Given a reader in Mexico City under --lang es, and a release three nodes of five report
    import time

    from cli import i18n
    from vault.cards import Card  # noqa: F401 - the contacts are (alias, card) pairs

    monkeypatch.setenv("TZ", "America/Mexico_City")
    time.tzset()
    i18n.setup("es")
    try:
        now = 1_764_792_300  # Wed 3 Dec 2025 14:05 CST
        rows = [
            notice(n, now - 60, "released", to="recipient", nodes=5, release_reason="deadline")
            for n in ("a", "b", "c")
        ]
        rows += [notice("a", now, "overdue", release_at=now + 2 * 86400)]
        released, overdue = group(rows)
        names = Names([], {}, "")
        # When the inbox describes them
        line, nxt = describe(released, names, now)
        # Then the sentences are Spanish, the count is one sentence, the command is complete
        assert line == (
            "La o el periodista: el caso se liberó porque la o el periodista no se reportó antes "
            f"del plazo y terminó el periodo de gracia. Caso {CASE}; lo informan 3 de 5 nodos "
            "(a, b, c)."
        )
        assert nxt == f"velador recover {CASE} --out recovered-{CASE[:8]}"
        # And a time is local, with its zone, never UTC ISO
        line, _ = describe(overdue, Names([], {CASE: "puerto"}, ""), now)
        assert line == (
            "puerto: no te reportaste a tiempo; los nodos liberan el caso el vie 5 dic 14:05 CST "
            "si no te reportas antes. Lo informa 1 de 3 nodos (a)."
        )
    finally:
        i18n.setup("en")
        monkeypatch.delenv("TZ")
        time.tzset()
