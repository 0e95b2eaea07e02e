"""`velador agent` as a real long-running process (APScheduler), stopped with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from .conftest import wait_for


def test_agent_process_reminds_and_stops_cleanly(v, armed, tmp_path):
    # The check-in recorded the nodes' deadline (2026-01-04, in the test clock's past from the
    # real clock the agent process runs on), so its first round gives the "passed" reminder.
    v.ok(armed.r, "checkin")
    log = tmp_path / "agent.log"
    env = {k: val for k, val in os.environ.items() if k != "VELADOR_PASSPHRASE"}
    env["PATH"] = f"{tmp_path}{os.pathsep}{env['PATH']}"  # no notify-send there: terminal only
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--home", str(armed.r), "agent", "--interval", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        wait_for(
            lambda: "reminder: inv: your check-in deadline has PASSED" in log.read_text(),
            what="the agent's reminder",
        )
        text = log.read_text()
        assert "It never checks in for you." in text
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(20)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
