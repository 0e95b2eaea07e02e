"""`velador agent` as a real process on the nodes' test clock, followed round by round.

The agent reads the time from the same clock file as the nodes (hidden --test-clock-file, with
VELADOR_AGENT_TEST_CLOCK=1) and, in that mode, prints `round N done at T` after every round, so a
test sets the clock and waits for the round that saw it: no guessed sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.node.conftest import REPO, SharedClock, wait_for

ROUND = re.compile(r"velador agent: round (\d+) done at (\d+)")


class AgentProc:
    def __init__(
        self,
        home: Path,
        clock: SharedClock,
        log: Path,
        *args: Any,
        passphrase: str | None = None,
        interval: float = 0.1,
    ) -> None:
        self.log, self.clock = log, clock
        env = {k: v for k, v in os.environ.items() if k != "VELADOR_PASSPHRASE"}
        env["PATH"] = f"{log.parent}{os.pathsep}{env['PATH']}"  # no notify-send: terminal only
        env["VELADOR_AGENT_TEST_CLOCK"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        if passphrase is not None:
            env["VELADOR_PASSPHRASE"] = passphrase
        cmd = [sys.executable, "-m", "cli.main", "--home", str(home), "agent"]
        cmd += ["--interval", str(interval), "--test-clock-file", str(clock.path)]
        cmd += [str(a) for a in args]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def text(self) -> str:
        return self.log.read_text()

    def rounds(self) -> list[tuple[int, int]]:
        return [(int(n), int(t)) for n, t in ROUND.findall(self.text())]

    def wait_round(self, when: int | None = None, timeout: float = 60.0) -> int:
        """Wait until a round has run at clock time `when` (default: now); its number."""
        when = self.clock.now() if when is None else when

        def seen() -> int | None:
            assert self.proc.poll() is None, self.text()
            got = [n for n, t in self.rounds() if t >= when]
            return got[0] if got else None

        return int(wait_for(seen, timeout, f"an agent round at {when}"))

    def step(self, seconds: int) -> int:
        self.clock.advance(seconds)
        return self.wait_round()

    def lines(self, needle: str) -> list[str]:
        return [ln for ln in self.text().splitlines() if needle in ln]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise
