"""Shared fixtures: fast KDF for tests, a real moto S3 server on loopback, per-test homes."""

from __future__ import annotations

import os
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


def free_port() -> int:
    with socket.socket() as s:
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
