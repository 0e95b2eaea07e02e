"""`velador node init` and `velador node serve` as an operator runs them (issue 12 item 10): a
plain-http public URL is refused, and a second node process on one data folder stops at once.
Both drive the real commands in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.node.conftest import REPO
from tests.node.test_restore import online_backup

NODE = [sys.executable, "-m", "cli.node_cmds"]


def run(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NODE, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "url", ["http://public.example", "http://10.0.0.5:8700", "ftp://node.example", "node.example"]
)
def test_init_refuses_a_url_that_is_not_https_outside_loopback_and_onion(tmp_path: Path, url):
    res = run("init", "--data", tmp_path / "n", "--name", "n", "--url", url)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert lines[0] == (
        "velador: error: --url must start with https:// (plain http:// is allowed only for "
        f"loopback and onion addresses), not {url!r}"
    )
    assert lines[1].startswith("velador: hint: put the node behind a TLS reverse proxy")
    assert not (tmp_path / "n").exists()  # nothing created


@pytest.mark.parametrize(
    "url",
    [
        "https://node.example",
        "http://127.0.0.1:8700",
        "http://localhost:8700",
        "http://[::1]:8700",
        "http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion",
    ],
)
def test_init_accepts_https_loopback_and_onion(tmp_path: Path, url):
    res = run("init", "--data", tmp_path / "n", "--name", "n", "--url", url)
    assert res.returncode == 0, res.stderr


def test_a_second_serve_on_the_same_folder_stops_at_once_and_the_first_keeps_serving(nodes):
    n = nodes("locked")
    db = n.dir / "node.db"
    before = (db.stat().st_mtime_ns, db.stat().st_size)
    env = dict(os.environ, VELADOR_NODE_TEST_CLOCK="1")
    started = time.monotonic()
    second = subprocess.run(
        [*NODE, "serve", "--data", str(n.dir), "--port", "1", "--test-clock-file", n.clock.path],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert time.monotonic() - started < 15  # "at once": no waiting for the lock or a port
    assert second.returncode == 78
    assert second.stderr.strip().splitlines() == [
        f"velador: error: another velador node process is already using the data folder {n.dir}",
        "velador: hint: stop that node first (for example 'systemctl stop velador-node'), or "
        "give this one another --data folder",
    ]
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before  # the database was not touched
    assert n.proc is not None and n.proc.poll() is None
    assert httpx.get(n.url + "/v1/health", timeout=10).status_code == 200
    # Once the first stops, the folder is free again (the lock dies with its process).
    assert n.term() == 0
    n.start()
    assert httpx.get(n.url + "/v1/health", timeout=10).status_code == 200


def test_restore_is_refused_while_the_node_serves(nodes, tmp_path: Path):
    n = nodes("busy")
    backup = tmp_path / "backup.db"
    online_backup(n.dir / "node.db", backup)
    res = run("restore", "--data", n.dir, backup)
    assert res.returncode == 78
    assert "already using the data folder" in res.stderr
