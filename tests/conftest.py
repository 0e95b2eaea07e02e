"""Shared fixtures: fast KDF for tests, a real moto S3 server on loopback, per-test homes."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# Test-only: identities made in tests use libsodium's minimum Argon2id cost (docs/format.md §3).
os.environ["VELADOR_INSECURE_FAST_KDF"] = "1"
# Tests read English messages unless they choose Spanish themselves (tests/cli/test_i18n.py):
# a developer's es_MX locale must not change what the suite sees.
os.environ["VELADOR_LANG"] = "en"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_PICK = random.SystemRandom()
_GIVEN: set[int] = set()
"""Ports already handed out by this process: servers often bind long after the pick (the chaos
harness picks five nodes' ports, then starts proxies, then the nodes), and a second pick of the
same free port would start two servers on it."""


def _port_range() -> range:
    """This process's share of the ports below the ephemeral range (one per xdist worker)."""
    lo = max(10000, _EPHEMERAL_LOW - 20000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    n = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if worker.startswith("gw") and worker[2:].isdigit() and n > 1:
        width = (_EPHEMERAL_LOW - lo) // n
        i = int(worker[2:]) % n
        return range(lo + i * width, lo + (i + 1) * width)
    return range(lo, _EPHEMERAL_LOW)


def free_port() -> int:
    """A port to give a server that a test starts a moment later.

    Chosen below the kernel's ephemeral range: a port the kernel hands out (bind to 0) is also
    what it hands to the next outgoing connection, and a test making hundreds of connections
    took a node's port in the second between this call and the node's bind (the chaos harness's
    node exited with uvicorn's start-up failure, code 3). Random, so xdist workers never pick
    the same one (each has its own share of the range), never twice in one process, and checked
    free now."""
    ports = _port_range()
    for _ in range(500):
        port = _PICK.choice(ports)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as s:  # pragma: no cover - a machine with that whole range in use
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, deadline_s: float = 20.0) -> None:
    """Poll until `url` answers, with a deadline (never a guessed sleep)."""
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up: {last}")


@pytest.fixture(scope="session")
def moto_server():
    """A real S3-compatible server (moto's standalone server) on a loopback port."""
    port = free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_env(moto_server, monkeypatch):
    """Credentials and region the usual boto3 way, pointing at the moto server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_server


@pytest.fixture
def make_bucket(s3_env):
    import uuid

    import boto3

    def _make() -> str:
        name = f"velador-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").create_bucket(Bucket=name)
        return name

    return _make


@pytest.fixture
def homes(tmp_path: Path):
    """Separate homes per party, as on separate machines."""

    def _home(name: str) -> Path:
        p = tmp_path / "homes" / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    return _home
