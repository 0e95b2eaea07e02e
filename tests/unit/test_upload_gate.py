"""Upload turns (vault/stores/gate.py, format.md §7.2) with deposits that overlap in one process.

Regression: the gate's folder lived in the process's environment. Two overlapping deposits (the
browser app runs deposits as background jobs; the agent deposits while `velador ui` may too)
restored it in the wrong order, leaving it pointing at a deleted folder: every later S3 upload of
the process failed with "cannot reach the S3 endpoint", and so did every child process that
inherited the variable (seen as tests/integration/test_link_drop.py failing after other tests in
the same xdist worker).
"""

from __future__ import annotations

import fcntl
import os

import pytest

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


def test_a_turn_held_by_one_thread_excludes_another_descriptor_of_the_same_process():
    # Worker threads share one process: the turn must exclude them too (flock on a descriptor
    # of its own per turn; a POSIX record lock would not).
    with gate.one_upload_per_store() as folder:
        with gate.upload_turn("s3://b/p") as turn:
            turn.take()
            (lock_file,) = list(folder.iterdir())
            fd = os.open(lock_file, os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
        fd = os.open(lock_file, os.O_RDWR)  # released when the upload ends
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
