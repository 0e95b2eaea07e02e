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
