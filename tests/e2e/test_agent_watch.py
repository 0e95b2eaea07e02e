"""Ongoing work, protected without remembering (issue 12): `velador case watch`, and the agent
that deposits watched folders when they change, holds the key in memory only, locks on request,
when idle and when the laptop sleeps, and behaves the same under the duress passphrase.

A real agent process on the nodes' test clock, real deposits to the case's two file:// stores,
checked with `velador snapshots` and `velador verify`.
"""

from __future__ import annotations

import re
import sqlite3
import time

from .agentproc import AgentProc
from .conftest import DURESS, PW, wait_for

H = 3600


def snapshot_sizes(v, home) -> list[int]:
    return [s["bytes"] for s in v.json(home, "snapshots", "inv", passphrase=None)]


def status_lines(v, home, needle: str) -> list[str]:
    return [ln for ln in v.ok(home, "status", "inv").splitlines() if needle in ln]


def test_agent_deposits_watched_folder_and_locks(v, armed, clock, tmp_path):
    work = tmp_path / "reportaje"
    work.mkdir()
    (work / "notas.txt").write_text("v1")
    # Given a watched folder with a 6h limit: its path is kept sealed, not in the clear.
    v.ok(armed.r, "case", "watch", "inv", work, "--max-age", "6h")
    listed = v.json(armed.r, "case", "watch", "inv")
    assert [(w["path"], w["max_age"], w["escrowed"]) for w in listed] == [
        (str(work.resolve()), 6 * H, None)
    ]
    # Read through SQLite, not as raw bytes: closing a plain descriptor on the database would
    # drop this process's SQLite locks (POSIX locks are per process), and the agent, thinking
    # itself alone, would reset the shared-memory index under the connections of this process.
    conn = sqlite3.connect(f"file:{armed.r / 'state.db'}?mode=ro", uri=True)
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert "reportaje" not in dump and "watches" in dump
    assert status_lines(v, armed.r, "watched folder") == [
        f"inv: watched folder #1 ({work.resolve()}): not escrowed yet (limit 6 hours)"
    ]

    agent = AgentProc(
        armed.r,
        clock,
        tmp_path / "agent.log",
        "--unlock",
        "--no-notify",
        "--debounce",
        "1",
        "--lock-after",
        "2h",
        "--suspend-jump",
        "4h",
        passphrase=PW,
    )
    try:
        # When it starts unlocked, it deposits the folder at once (snapshot 1)...
        wait_for(lambda: snapshot_sizes(v, armed.r) == [2], 60, "the first deposit")
        # ...and a change is escrowed within a minute.
        (work / "notas.txt").write_text("v2, más")
        changed = time.monotonic()
        wait_for(lambda: snapshot_sizes(v, armed.r) == [2, 8], 60, "the change deposited")
        assert time.monotonic() - changed < 60
        v.ok(armed.r, "verify", "inv", passphrase=None)
        assert "inv: deposited snapshot 2 (1 file; changed)" in agent.text()
        assert status_lines(v, armed.r, "watched folder") == [
            f"inv: watched folder #1 ({work.resolve()}): newest escrowed copy 0 seconds old "
            "(limit 6 hours)"
        ]
        assert "unlocked" in v.ok(armed.r, "agent", "status", passphrase=None)

        # `velador agent lock`: it forgets the key, keeps reminding, does not deposit, says so.
        v.ok(armed.r, "agent", "lock", passphrase=None)
        assert "locked" in v.ok(armed.r, "agent", "status", passphrase=None)
        assert agent.lines("locked on request")
        (work / "notas.txt").write_text("v3, escrito con el agente bloqueado")
        for _ in range(7):
            agent.step(H)
        assert agent.lines(
            "inv: its watched folders are due for a deposit, but the agent is locked"
        )
        assert snapshot_sizes(v, armed.r) == [2, 8]
        # The status warns: the newest escrowed copy is 7h old, over the 6h limit.
        warn = status_lines(v, armed.r, "warning: inv: the escrowed copy")
        assert warn and "is older than 6 hours" in warn[0], v.ok(armed.r, "status", "inv")

        # Unlocked with the DURESS passphrase it behaves as a normal agent: the same message,
        # and the change made while locked is deposited.
        v.ok(armed.r, "agent", "unlock", passphrase=DURESS)
        wait_for(lambda: len(snapshot_sizes(v, armed.r)) == 3, 60, "the catch-up deposit")
        assert snapshot_sizes(v, armed.r)[-1] == len(b"v3, escrito con el agente bloqueado")
        unlocked = agent.lines("velador agent: unlocked.")
        assert len(unlocked) == 2 and unlocked[0] == unlocked[1]
        assert "duress" not in agent.text().lower()

        # The laptop sleeps (the clock jumps 5h between two rounds): it locks itself. (One
        # round first: the first round after an unlock does not judge the time since the last.)
        last = max(n for n, _ in agent.rounds())
        wait_for(lambda: any(n > last for n, _ in agent.rounds()), 30, "a round after unlock")
        agent.step(5 * H)
        assert agent.lines(
            "the computer was asleep, or its clock jumped: 5 hours between two rounds"
        )
        assert "locked" in v.ok(armed.r, "agent", "status", passphrase=None)

        # Unlocked again, and left idle for 2h: it locks itself.
        v.ok(armed.r, "agent", "unlock")
        wait_for(lambda: len(agent.lines("velador agent: unlocked.")) == 3, 30, "the unlock")
        agent.step(H)
        agent.step(H)
        agent.step(H)
        assert agent.lines("no activity for 2 hours; the agent locked itself.")
        assert "locked" in v.ok(armed.r, "agent", "status", passphrase=None)
        # One agent per home: a second one refuses to start.
        code, _, err = v(armed.r, "agent", passphrase=None)
        assert code == 75 and "an agent is already running for this home" in err
    finally:
        code = agent.stop()
    text = agent.text()
    assert code == 0, text
    assert "Traceback" not in text
    assert not (armed.r / "agent.sock").exists()
    # No path in the agent's output: only case names and folder numbers.
    assert not re.search(r"reportaje", text), text


def test_watch_refuses_what_cannot_be_deposited(v, armed, tmp_path):
    a, b = tmp_path / "a" / "docs", tmp_path / "b" / "docs"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    v.ok(armed.r, "case", "watch", "inv", a)
    first, _ = v.fails(armed.r, "case", "watch", "inv", b, code=65)
    assert "already watches a folder named 'docs'" in first
    first, _ = v.fails(armed.r, "case", "watch", "inv", tmp_path / "nope", code=66)
    assert "no such file or folder" in first
    v.ok(armed.r, "case", "unwatch", "inv", a)
    assert v.json(armed.r, "case", "watch", "inv") == []
    first, _ = v.fails(armed.r, "agent", "lock", code=66, passphrase=None)
    assert "no agent is running for this home" in first


def test_a_deposit_waits_for_the_agents_deposit(armed, tmp_path):
    # The agent holds the home's deposit lock while it deposits; `velador deposit` waits.
    import os
    import subprocess
    import sys

    from cli.agent_deposits import deposit_lock
    from tests.node.conftest import REPO

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    env = dict(os.environ, VELADOR_PASSPHRASE=PW)
    err = tmp_path / "deposit.err"
    with deposit_lock(armed.r, wait=False) as held:
        assert held
        with deposit_lock(armed.r, wait=False) as again:
            assert not again  # the agent's own second deposit would not start either
        with open(err, "w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "--home",
                    str(armed.r),
                    "deposit",
                    "inv",
                    folder,
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        wait_for(lambda: "waiting for the agent's deposit" in err.read_text(), 30, "the wait")
        assert proc.poll() is None
    assert proc.wait(60) == 0, err.read_text()
    assert "Snapshot 1" in err.read_text()


def test_harden_process_makes_it_not_dumpable():
    # What the agent calls before the key is in memory (docs/threat-model.md §5.1).
    import subprocess
    import sys

    from tests.node.conftest import REPO

    code = (
        "import ctypes, resource\n"
        "from cli.agent_keys import harden_process\n"
        "harden_process()\n"
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), resource.getrlimit(resource.RLIMIT_CORE))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.split(None, 1) == ["0", "(0, 0)\n"]


def test_agent_outlives_a_failed_deposit(v, armed, clock, tmp_path):
    # A store the deposit cannot write (its folder replaced by a file) fails one deposit; the
    # agent says so in one line, keeps going, and deposits once the store is back.
    work = tmp_path / "carpeta"
    work.mkdir()
    (work / "a.txt").write_text("uno")
    v.ok(armed.r, "case", "watch", "inv", work)
    store = tmp_path / "storeB"
    aside = tmp_path / "storeB.aside"
    had = store.exists()
    if had:
        store.rename(aside)
    store.write_text("not a folder")
    agent = AgentProc(
        armed.r,
        clock,
        tmp_path / "agent.log",
        "--unlock",
        "--no-notify",
        "--suspend-jump",
        "1h",
        passphrase=PW,
    )
    try:
        wait_for(lambda: agent.lines("inv: the deposit failed ("), 60, "the failed deposit")
        assert "it is tried again in 5 minutes" in agent.lines("inv: the deposit failed (")[0]
        assert snapshot_sizes(v, armed.r) == []
        store.unlink()
        if had:
            aside.rename(store)
        agent.step(300)
        wait_for(lambda: snapshot_sizes(v, armed.r) == [3], 60, "the deposit after the retry")
        assert agent.proc.poll() is None
    finally:
        code = agent.stop()
    assert code == 0 and "Traceback" not in agent.text(), agent.text()
    assert "carpeta" not in agent.text()
