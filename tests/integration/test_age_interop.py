"""The exported case key opens stored objects with the stock `age` binary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("age") is None, reason="the stock `age` binary is not installed"
    ),
]

VELADOR = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "velador"


def ok(env, home, *args) -> str:
    r = subprocess.run(
        [str(VELADOR), "--home", str(home), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_stock_age_opens_chunks_and_snapshots(tmp_path):
    env = dict(os.environ, VELADOR_PASSPHRASE="integration test passphrase")
    r, o = tmp_path / "r", tmp_path / "o"
    ok(env, r, "id", "new", "--name", "Rita")
    ok(env, o, "id", "new", "--name", "Diario", "--role", "outlet")
    ok(env, r, "contact", "add", ok(env, o, "id", "card").strip(), "--alias", "d")
    store = tmp_path / "store"
    info = json.loads(
        ok(
            env,
            r,
            "case",
            "create",
            "c",
            "--recipient",
            "d",
            "--threshold",
            "2",
            "--shares",
            "2",
            "--offline-dir",
            tmp_path / "shares",
            "--store",
            f"file://{store}",
            "--json",
        )
    )
    data = tmp_path / "data"
    data.mkdir()
    secret = b"the leaked memo, verbatim\n" * 10
    (data / "memo.txt").write_bytes(secret)
    snap = json.loads(ok(env, r, "deposit", "c", data, "--json"))["snapshot_id"]
    key = tmp_path / "k.txt"
    ok(
        env,
        o,
        "recover",
        "--shares",
        tmp_path / "shares",
        "--out",
        tmp_path / "out",
        "--export-key",
        key,
    )
    case_id = info["case_id"]
    (chunk,) = [p for p in (store / case_id / "objects").rglob("*") if p.is_file()]

    plain = subprocess.run(
        ["age", "-d", "-i", str(key), str(chunk)], capture_output=True, check=True
    ).stdout
    assert plain == secret

    snap_obj = store / case_id / "snapshots" / snap
    doc = json.loads(
        subprocess.run(
            ["age", "-d", "-i", str(key), str(snap_obj)], capture_output=True, check=True
        ).stdout
    )
    assert doc["kind"] == "snapshot"
    assert doc["body"]["case_id"] == case_id
    assert [e["path"] for e in doc["body"]["entries"] if e["type"] == "file"] == ["data/memo.txt"]

    # And a wrong key does not open it.
    if shutil.which("age-keygen") is None:
        return
    other = tmp_path / "other.txt"
    subprocess.run(["age-keygen", "-o", str(other)], capture_output=True, check=True)
    bad = subprocess.run(["age", "-d", "-i", str(other), str(chunk)], capture_output=True)
    assert bad.returncode != 0
