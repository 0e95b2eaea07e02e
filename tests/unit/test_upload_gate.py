"""Upload turns (vault/stores/gate.py, format.md §7.2) with deposits that overlap in one process.

Regression: the gate's folder lived in the process's environment. Two overlapping deposits (the
browser app runs deposits as background jobs; the agent deposits while `velador ui` may too)
restored it in the wrong order, leaving it pointing at a deleted folder: every later S3 upload of
the process failed with "cannot reach the S3 endpoint", and so did every child process that
inherited the variable (seen as tests/integration/test_link_drop.py failing after other tests in
the same xdist worker).
"""

from __future__ import annotations

import os
import threading

from vault.stores import gate


def test_overlapping_deposits_leave_no_stale_gate_and_do_not_touch_the_environment():
    before = os.environ.get(gate.ENV)
    a = gate.one_upload_per_store()
    b = gate.one_upload_per_store()
    folder_a = a.__enter__()
    folder_b = b.__enter__()
    assert folder_a == folder_b  # one set of turns for the whole process
    assert os.environ.get(gate.ENV) == before
    assert gate.worker_env() == {gate.ENV: str(folder_a)}  # worker processes get it
    a.__exit__(None, None, None)  # the first deposit ends while the second still uploads
    assert folder_b.is_dir()
    with gate.upload_turn("s3://b/p") as turn:
        turn.take()
        assert turn._fd is not None  # the second deposit still takes turns
    b.__exit__(None, None, None)
    assert not folder_b.exists()
    assert os.environ.get(gate.ENV) == before
    assert gate.worker_env() == {}
    with gate.upload_turn("s3://b/p") as turn:
        turn.take()  # outside a deposit nothing waits, and nothing fails
        assert turn._fd is None


def test_turns_exclude_threads_of_one_process():
    inside = 0
    most = 0
    lock = threading.Lock()

    def upload() -> None:
        nonlocal inside, most
        for _ in range(50):
            with gate.upload_turn("s3://b/p") as turn:
                turn.take()
                with lock:
                    inside += 1
                    most = max(most, inside)
                os.sched_yield()  # let another thread in, if the turn did not keep it out
                with lock:
                    inside -= 1

    with gate.one_upload_per_store():
        threads = [threading.Thread(target=upload) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert most == 1
