"""Issue 11, finding 1: one slow peer must not stop releases (docs/threat-model.md, "Slow peers").

A case whose policy names a fake "node" that drips one byte a second (or accepts and never
answers) used to keep the pre-release sync waiting forever, inside the sweep lock and inside the
start-up sweep: no case on that node released again, and a restart did not help (the node never
started serving). Here real `velador node serve` processes with the test clock must release
both the hostile case and an unrelated one within a generous bound, and start serving.
"""

from __future__ import annotations

import logging
import time

import pytest

from escrow_node.outbox import Outbox
from escrow_node.scheduler import SKIP_MESSAGE, EngineScheduler
from tests.conftest import wait_http
from tests.hostile import HostileServer
from tests.node.builders import T0, person
from tests.node.conftest import wait_for

EVERY, GRACE = 3600, 600
BOUND = 20.0


@pytest.fixture
def evil_card(tmp_path):
    servers = []

    def make(mode: str):
        srv = HostileServer(mode)
        servers.append(srv)
        return person(tmp_path / f"evil-{len(servers)}", "evil", "node", srv.url).card, srv

    yield make
    for s in servers:
        s.close()


def register(node, world) -> str:
    node.client(world.reporter).register_case(world.policy, world.envs_for(node.card))
    return world.policy.case_id


@pytest.mark.parametrize("mode", ["drip", "stall"])
def test_a_hostile_peer_does_not_stop_releases(nodes, world_for, evil_card, clock, mode):
    # Given a node holding a case that names a hostile peer (registered first: swept first),
    # and an unrelated case on the same node
    a = nodes("node-a", peers={"timeout": 3})
    card, evil = evil_card(mode)
    hostile = register(a, world_for(a.card, card, every=EVERY, grace=GRACE))
    honest = register(a, world_for(a.card, every=EVERY, grace=GRACE))
    # When both go silent past deadline + grace
    clock.set(T0 + EVERY + GRACE + 1)
    t0 = time.monotonic()
    # Then the unrelated case releases at once, and the hostile one once its sync times out
    a.wait_state(honest, "RELEASED", BOUND)
    a.wait_state(hostile, "RELEASED", BOUND)
    assert time.monotonic() - t0 < BOUND
    assert evil.connections >= 1  # the peer was asked (and cut off), not ignored
    # And the node kept serving meanwhile
    wait_http(a.url + "/v1/health", 5)
    assert "pre-release sync: peer evil" in a.log_text()
    assert SKIP_MESSAGE not in a.log_text()


def test_a_restart_with_a_hostile_case_due_serves_and_releases(nodes, world_for, evil_card, clock):
    # Given a node whose hostile-peer case and an unrelated case came due while it was down
    a = nodes("node-a", peers={"timeout": 30})  # the sync alone would take 30 s or more
    card, _ = evil_card("drip")
    hostile = register(a, world_for(a.card, card, every=EVERY, grace=GRACE))
    honest = register(a, world_for(a.card, every=EVERY, grace=GRACE))
    a.term()
    clock.set(T0 + EVERY + GRACE + 1)
    # When it starts again: start() waits for /v1/health (20 s), which the old start-up sweep
    # never let it answer
    t0 = time.monotonic()
    a.start()
    # Then it serves within the bound and the unrelated case is released meanwhile
    a.wait_state(honest, "RELEASED", BOUND)
    assert time.monotonic() - t0 < BOUND
    assert a.state(hostile) == "OVERDUE"  # still waiting for its (bounded) sync
    wait_for(lambda: a.state(hostile) == "RELEASED", 60, "the hostile case to release")


def test_many_cases_naming_one_hostile_peer_do_not_queue_behind_it(
    nodes, world_for, evil_card, clock
):
    # Given 20 cases naming the same dripping peer, registered before an unrelated case
    a = nodes("node-a", peers={"timeout": 3})
    card, _ = evil_card("drip")
    people: dict = {}
    hostile = [
        register(a, world_for(a.card, card, every=EVERY, grace=GRACE, people=people))
        for _ in range(20)
    ]
    honest = register(a, world_for(a.card, every=EVERY, grace=GRACE))
    clock.set(T0 + EVERY + GRACE + 1)
    # Then all release within the bound: after the first asks time out the peer is "slow",
    # and the other syncs skip it instead of each waiting its full timeout in turn
    a.wait_state(honest, "RELEASED", BOUND)
    for case_id in hostile:
        a.wait_state(case_id, "RELEASED", BOUND)
    assert "too slow recently; skipped" in a.log_text()


def test_apscheduler_skips_are_not_logged(inproc, caplog):
    """Issue 12 §10: a job firing while its last run is still going is skipped on purpose;
    APScheduler's WARNING for each skip is noise and is not logged."""
    sched = EngineScheduler(inproc.svc, Outbox(inproc.svc), tick=0.05)
    with caplog.at_level(logging.DEBUG, logger="apscheduler"):
        with sched._sweep_lock:  # a sweep that takes long: the 0.05 s job fires meanwhile
            sched.start()
            wait_for(lambda: sched.skipped_runs >= 3, BOUND, "skipped sweep runs")
        sched.shutdown()
    assert sched.skipped_runs >= 3
    assert not [r for r in caplog.records if SKIP_MESSAGE in r.getMessage()]
