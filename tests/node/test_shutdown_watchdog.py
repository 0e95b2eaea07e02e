"""A node whose shutdown hangs still exits, and says where it hung (escrow_node/app.py,
SHUTDOWN_HARD).

Once seen in `make test`: a node stuck after "Waiting for application shutdown" for more than
20 s, holding its data folder. The watchdog runs in a real process here, as in `node serve`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HANGS = """
import threading, time
from escrow_node.app import _shutdown_watchdog
_shutdown_watchdog(0.5)
stuck = threading.Event()
def in_shutdown_step():
    stuck.wait(120)  # a shutdown step that never returns
in_shutdown_step()
"""

FINISHES = """
from escrow_node.app import _shutdown_watchdog
_shutdown_watchdog(5).cancel()
print("stopped cleanly")
"""


def test_a_shutdown_that_hangs_exits_with_status_1_and_every_stack():
    # Given a stopping node whose shutdown step never returns
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-c", HANGS], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    # Then it exits by itself, long before the step would, with status 1
    assert res.returncode == 1, res.stderr
    assert time.monotonic() - start < 60  # a bound that proves it did not wait for the step
    # and the log says why and shows where it hung
    assert "stopping took more than 0.5 s; exiting now" in res.stderr
    assert "in_shutdown_step" in res.stderr


def test_a_shutdown_that_finishes_is_not_cut():
    # Given a shutdown that completes and cancels the watchdog
    res = subprocess.run(
        [sys.executable, "-c", FINISHES], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    # Then the process ends normally
    assert res.returncode == 0 and res.stdout.strip() == "stopped cleanly", res.stderr
    assert "stopping took" not in res.stderr
