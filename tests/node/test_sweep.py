"""The sweep (docs/protocol.md §5.3) with a case it cannot advance.

Regression: one case whose write is refused (Conflict from the version-guarded UPDATE) used to
abort the whole batch transaction, so every other case due in the same batch, including
releases, was rolled back, and the scheduler re-ran the failing sweep at once, forever.
"""

from __future__ import annotations

import logging

import pytest

from escrow_node.outbox import Outbox
from escrow_node.scheduler import EngineScheduler
from escrow_node.sweep import sweep
from tests.node.builders import T0

EVERY, GRACE = 3600, 600


def poison(inproc, case_id: str) -> None:
    """Make every UPDATE of one case row silently match nothing, as a concurrent writer or a
    final state would: the version guard in NodeService.apply then raises Conflict."""
    with inproc.svc.store.read() as conn:
        conn.execute(
            f"CREATE TEMP TRIGGER poison BEFORE UPDATE ON cases WHEN old.case_id = '{case_id}'"
            " BEGIN SELECT RAISE(IGNORE); END"
        )


def cure(inproc) -> None:
    with inproc.svc.store.read() as conn:
        conn.execute("DROP TRIGGER poison")


@pytest.fixture
def three_cases(inproc, world_for):
    ids = []
    for _ in range(3):
        w = world_for(inproc.card, every=EVERY, grace=GRACE)
        inproc.client(w.reporter).register_case(w.policy, w.envs_for(inproc.card))
        ids.append(w.policy.case_id)
    return ids


def states(inproc, ids):
    return [inproc.query("SELECT state FROM cases WHERE case_id = ?", i)[0][0] for i in ids]


def test_a_case_that_cannot_be_advanced_does_not_hold_up_the_others(inproc, three_cases, caplog):
    bad = three_cases[0]  # registered first: first in the sweep's order
    poison(inproc, bad)
    # Given all three silent past deadline + grace (the single node has no peers to ask)
    inproc.clock.set(T0 + EVERY + GRACE)
    # When the sweep runs
    with caplog.at_level(logging.ERROR, logger="velador.node.sweep"):
        result = inproc.sweep()
    # Then the two good cases are released, the bad one is untouched and named in the log
    assert states(inproc, three_cases) == ["ARMED", "RELEASED", "RELEASED"]
    assert result.failed == (bad,)
    assert any(bad in r.getMessage() and "retried" in r.getMessage() for r in caplog.records)
    advances = "SELECT count(*) FROM audit WHERE case_id = ? AND event = 'advance'"
    assert inproc.query(advances, bad)[0][0] == 0
    assert inproc.svc.metrics.get("velador_node_sweep_errors_total") == 1
    # And the next sweep retries it: once it can be written, it is released too
    cure(inproc)
    result = inproc.sweep()
    assert result.failed == ()
    assert states(inproc, three_cases) == ["RELEASED"] * 3


def test_a_failing_case_does_not_make_the_exact_time_job_spin(inproc, three_cases):
    bad = three_cases[0]
    poison(inproc, bad)
    inproc.clock.set(T0 + EVERY - 900)  # first reminder due for all three
    sched = EngineScheduler(inproc.svc, Outbox(inproc.svc), tick=30)
    # When the exact-time job runs the sweep (the scheduler itself is not started)
    sched.run_sweep()
    assert states(inproc, three_cases) == ["ARMED", "REMINDED", "REMINDED"]
    # Then it is re-armed at the next real wake-up, not at the failing case's past one (which
    # would run the sweep again immediately, in a loop); the periodic sweep retries that case.
    assert sched._wake_at is not None and sched._wake_at > inproc.clock.now()


def test_a_row_whose_policy_names_another_case_is_refused(inproc, three_cases):
    a, b, _ = three_cases
    with inproc.svc.store.tx() as conn:
        policy_b = conn.execute("SELECT policy, policy_hash FROM cases WHERE case_id = ?", (b,))
        doc, h = policy_b.fetchone()
        conn.execute("UPDATE cases SET policy = ?, policy_hash = ? WHERE case_id = ?", (doc, h, a))
    inproc.clock.set(T0 + EVERY - 900)
    # The write would go through case b's row; it is refused for a alone.
    result = inproc.sweep()
    assert result.failed == (a,)
    assert states(inproc, three_cases) == ["ARMED", "REMINDED", "REMINDED"]
    assert [r[0] for r in inproc.query("SELECT version FROM cases ORDER BY rowid")] == [1, 2, 2]


def test_sweep_reads_each_due_case_once_in_batches(inproc, world_for):
    # More due cases than one batch, with equal wake-up times: the keyset cursor must not skip
    # or repeat any of them.
    from escrow_node import sweep as sweep_mod

    ids = []
    for _ in range(5):
        w = world_for(inproc.card, every=EVERY, grace=GRACE)
        inproc.client(w.reporter).register_case(w.policy, w.envs_for(inproc.card))
        ids.append(w.policy.case_id)
    inproc.clock.set(T0 + EVERY - 900)
    old = sweep_mod.BATCH
    sweep_mod.BATCH = 2
    try:
        result = sweep(inproc.svc)
    finally:
        sweep_mod.BATCH = old
    assert result.advanced == 5 and result.failed == ()
    assert states(inproc, ids) == ["REMINDED"] * 5
