"""Five real `velador node serve` processes, each with its own skewable test clock.

Clocks: node i reads `ROOT/clocks/current/<name>`, where `current` is a symlink to one
generation directory holding every node's file. The harness writes a new generation (base time
plus each node's skew) and swaps the symlink with one rename, so all nodes see the new time at
once: a jump of twenty minutes never shows up as twenty minutes of skew between two peers.

The node's FileClock never goes back while the process lives (it keeps the largest value read),
and starts afresh when the process restarts; `Node.clock` models exactly that.

Processes are started with PR_SET_PDEATHSIG, so they die with the harness even if it is killed
itself; the harness also kills them by pid in a `finally`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from escrow_node.testclock import write_clock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Clocks:
    """The generation-switched clock files of all nodes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.gen = 0
        self.current = root / "current"

    def path(self, name: str) -> Path:
        return self.current / name

    def write(self, values: dict[str, int]) -> None:
        self.gen += 1
        d = self.root / f"gen-{self.gen}"
        d.mkdir()
        for name, value in values.items():
            write_clock(d / name, value)
        tmp = self.root / "current.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(d.name)
        os.replace(tmp, self.current)  # atomic: every node sees the new generation at once
        if self.gen > 2:  # no reader can still be inside a generation two swaps old
            old = self.root / f"gen-{self.gen - 2}"
            for f in old.iterdir():
                f.unlink()
            old.rmdir()


class Node:
    def __init__(self, root: Path, name: str, tick: float, clocks: Clocks) -> None:
        from click.testing import CliRunner

        from cli.node_cmds import node as node_cli
        from tests.conftest import free_port
        from vault.identity import load_card

        self.name = name
        self.dir = root / name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tick = tick
        self.clocks = clocks
        res = CliRunner().invoke(
            node_cli,
            ["init", "--data", str(self.dir), "--name", name, "--url", self.url,
             "--port", str(self.port), "--registration", "open"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        self.card = load_card(self.dir)
        self.configure(registration={"allow_private_targets": True})  # loopback receivers
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "serve.log"
        self.skew = 0
        self.clock = 0
        """The node's time as its FileClock sees it (max of what it read since start)."""
        self.procs: list[subprocess.Popen] = []
        """Every process started for this node, to prove none is left behind."""

    # --- configuration --------------------------------------------------------------------------

    def configure(self, **sections: dict[str, Any]) -> None:
        path = self.dir / "node.toml"
        doc = tomllib.loads(path.read_text())
        for section, values in sections.items():
            doc.setdefault(section, {}).update(values)
        path.write_text(tomli_w.dumps(doc))

    # --- process --------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        proc = self.proc  # read once: a kill timer may clear it from another thread
        return proc is not None and proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        assert self.proc is None
        env = dict(os.environ, VELADOR_NODE_TEST_CLOCK="1", PYTHONUNBUFFERED="1")
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.node_cmds", "serve", "--data", str(self.dir),
                 "--tick", str(self.tick), "--test-clock-file", str(self.clocks.path(self.name))],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        self.procs.append(self.proc)
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} at start-up")
            try:
                self.clock = httpx.get(self.url + "/v1/health", timeout=2.0).json()["time"]
                return
            except httpx.HTTPError:
                if time.monotonic() > end:
                    raise RuntimeError(f"{self.name} did not come up in {timeout} s") from None
                time.sleep(0.05)

    def kill(self) -> None:
        proc = self.proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(20)
        self.proc = None

    def stop(self, signalled: bool = False) -> None:
        """SIGTERM (unless `signalled` already), then SIGKILL if it does not stop in time;
        never leaves the process behind."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                if not signalled:
                    self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        finally:
            self.proc = None

    def read_clock(self) -> int:
        """Make the node read its clock file now (GET /v1/health) and return its time."""
        self.clock = httpx.get(self.url + "/v1/health", timeout=10.0).json()["time"]
        return self.clock

    # --- read-only views ------------------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.dir / 'node.db'}?mode=ro", uri=True, timeout=20)
        conn.row_factory = sqlite3.Row
        return conn

    def log_text(self, start: int = 0) -> str:
        with contextlib.suppress(FileNotFoundError), open(self.log, "rb") as fh:
            fh.seek(start)
            return fh.read().decode("utf-8", "replace")
        return ""

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0


def peer_urls(proxy_url: dict[str, str]) -> dict[str, Any]:
    return {"urls": proxy_url}


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
