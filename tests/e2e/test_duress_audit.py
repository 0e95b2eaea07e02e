"""`velador audit` under duress after a forced destroy (issue 11 final read, leftover for 12).

A destroy forced with the duress passphrase is not carried out: the nodes keep the case armed
and answer the captor from their cover state (docs/protocol.md §4.4). The audit's proof of
custody must come from that cover too: after a real destroy a node proves it holds no envelope,
so after a forced one the captor must see the same, never the envelopes still held.
"""

from __future__ import annotations

import json

from .conftest import DURESS, PW, create_args
from .test_duress_actions import NAMES, normalize


def _shape(doc: dict, name: str) -> dict:
    """The audit as the captor reads it, without what differs between two cases by nature."""
    text = json.dumps(doc, sort_keys=True).replace(name, "CASE")
    doc = json.loads(text)
    doc.pop("case_id")
    for n in doc["nodes"]:
        n.pop("fingerprint")
    return doc


def test_audit_after_a_forced_destroy_shows_what_a_real_destroy_shows(v, people, net, tmp_path):
    nodes = net(2)
    ids = {}
    for pw, name in NAMES.items():
        args = create_args(2, tmp_path / name)
        args[2] = name
        ids[pw] = v.json(people.r, *args)["case_id"]
        (tmp_path / f"{name}.md").write_text("notas\n")
        v.ok(people.r, "deposit", name, tmp_path / f"{name}.md")
    # Before: both cases' nodes prove they hold the 2 envelopes of their share.
    before = v.json(people.r, "audit", NAMES[DURESS], passphrase=DURESS)
    assert [n["envelopes"] for n in before["nodes"]] == [2, 2]
    # The reporter destroys one case; the captor forces the destruction of the other.
    for pw, name in NAMES.items():
        v.ok(people.r, "case", "destroy", name, "--yes", passphrase=pw)
    assert [n.state(ids[DURESS]) for n in nodes] == ["ARMED"] * 2  # not carried out
    docs = []
    for pw, name in NAMES.items():
        code, out, err = v(people.r, "audit", name, "--json", passphrase=pw)
        assert code == 3, err
        docs.append(_shape(json.loads(out), name))
    assert [n["envelopes"] for n in docs[0]["nodes"]] == [0, 0]  # really destroyed
    assert docs[1] == docs[0]
    texts = [
        normalize("".join(v(people.r, "audit", name, passphrase=pw)[1:]), name)
        for pw, name in NAMES.items()
    ]
    assert texts[1] == texts[0]
    # The reporter, free again, sees the case live with its envelopes held.
    free = v.json(people.r, "audit", NAMES[DURESS], passphrase=PW)
    assert [n["envelopes"] for n in free["nodes"]] == [2, 2] and free["recoverable"]
