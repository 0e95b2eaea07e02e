"""Partition: the reporter reaches only 2 of 5 nodes for several intervals; gossip between the
(real) nodes keeps all five armed and nothing is released."""

from __future__ import annotations

from typing import ClassVar

import pytest

import vault.switch
from vault.errors import NodeError
from vault.nodeproto.client import NodeClient

from .conftest import DAY, create_args, wait_for


class CutOff(NodeClient):
    """The reporter's side of a network cut: these nodes are unreachable from the laptop only."""

    blocked: ClassVar[set[str]] = set()

    def _send(self, *args, **kwargs):
        if self.card.fingerprint in self.blocked:
            raise NodeError(f"node {self.name} is unreachable (ConnectError)", hint=self.base)
        return super()._send(*args, **kwargs)


@pytest.fixture
def five(v, people, net, tmp_path):
    ns = net(5)
    args = create_args(5, tmp_path)
    args[args.index("--threshold") + 1] = "3"
    args[args.index("--every") + 1] = "1d"
    args[args.index("--grace") + 1] = "12h"
    args[args.index("--remind") + 1] = "6h"
    info = v.json(people.r, *args)
    assert info["armed"] is True
    return ns, info["case_id"]


def test_reporter_reaches_two_of_five(v, people, five, clock, monkeypatch):
    ns, case_id = five
    monkeypatch.setattr(vault.switch, "NodeClient", CutOff)
    CutOff.blocked = {n.card.fingerprint for n in ns[2:]}
    for _ in range(5):
        clock.advance(20 * 3600)
        out = v.json(people.r, "checkin")
        (case,) = out["cases"]
        assert [n["ok"] for n in case["nodes"]] == [True, True, False, False, False]
        assert [n.get("queued", False) for n in case["nodes"]] == [False] * 2 + [True] * 3
        seq = case["seq"]
        for node in ns:
            wait_for(
                lambda node=node, seq=seq: (
                    node.query("SELECT seq FROM cases WHERE case_id = ?", case_id)[0][0] == seq
                ),
                what=f"gossip to {node.card.name}",
            )
    for node in ns:
        assert node.state(case_id) == "ARMED"
        row = node.query("SELECT deadline FROM cases WHERE case_id = ?", case_id)[0]
        assert row[0] == clock.now() + DAY
    # The cut heals: the agent finds the nodes already have the check-ins (gossip won).
    CutOff.blocked = set()
    res = v.json(people.r, "agent", "--once", "--no-notify", passphrase=None)
    assert sorted(r["outcome"] for r in res["resent"]) == ["superseded"] * 3
