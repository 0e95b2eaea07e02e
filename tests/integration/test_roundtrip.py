"""Round trip through the real `velador` executable: ~500 files, a 200 MiB file, unicode names,
two file:// replicas and an s3:// store on a real moto server."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import random
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

VELADOR = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "velador"
BIG = 200 * 1024 * 1024
BLOCK = 8 * 1024 * 1024


@pytest.fixture(scope="session")
def big_file(tmp_path_factory) -> Path:
    """200 MiB of random bytes, written once per session in 8 MiB blocks."""
    p = tmp_path_factory.mktemp("big") / "big.bin"
    with open(p, "wb") as fh:
        for _ in range(BIG // BLOCK):
            fh.write(os.urandom(BLOCK))
    return p


def make_tree(root: Path, big: Path) -> None:
    rnd = random.Random(2024)
    names = ["niño/ñandú ü.txt", "données/résumé.md", "日本/報告.txt", "space dir/a b.txt"]
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_text(f"unicode {n}\n", encoding="utf-8")
    for i in range(490):
        d = root / f"d{i % 7}" / f"sub{i % 5}" / ("deep" if i % 3 == 0 else "")
        d.mkdir(parents=True, exist_ok=True)
        size = 0 if i % 25 == 0 else rnd.randint(1, 40_000)
        (d / f"f{i:03}.dat").write_bytes(rnd.randbytes(size))
    (root / "empty-dir").mkdir()
    os.link(big, root / "big.bin")


def run(env: dict[str, str], home: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VELADOR), "--home", str(home), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def ok(env, home, *args) -> str:
    r = run(env, home, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def assert_same_tree(a: Path, b: Path) -> None:
    fa = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
    fb = sorted(str(p.relative_to(b)) for p in b.rglob("*"))
    assert fa == fb
    cmp = filecmp.dircmp(a, b)

    def walk(c: filecmp.dircmp) -> None:
        assert not c.left_only and not c.right_only and not c.funny_files
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        assert not mismatch and not errors, (c.left, mismatch, errors)
        for sub in c.subdirs.values():
            walk(sub)

    walk(cmp)


def sha(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(BLOCK):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def deposited(tmp_path_factory, big_file, moto_server):
    import boto3

    base = tmp_path_factory.mktemp("rt")
    env = dict(
        os.environ,
        VELADOR_PASSPHRASE="integration test passphrase",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    bucket = f"velador-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    r, o = base / "reporter", base / "outlet"
    ok(env, r, "id", "new", "--name", "Rita")
    ok(env, o, "id", "new", "--name", "Diario", "--role", "outlet")
    ok(env, r, "contact", "add", ok(env, o, "id", "card").strip(), "--alias", "diario")
    stores = {
        "a": f"file://{base / 'storeA'}",
        "b": f"file://{base / 'storeB'}",
        "s3": f"s3://{bucket}/vault?endpoint={moto_server}",
    }
    info = json.loads(
        ok(
            env,
            r,
            "case",
            "create",
            "big",
            "--recipient",
            "diario",
            "--threshold",
            "2",
            "--shares",
            "3",
            "--offline-dir",
            base / "shares",
            "--store",
            stores["a"],
            "--store",
            stores["b"],
            "--store",
            stores["s3"],
            "--json",
        )
    )
    tree = base / "data" / "tree"
    tree.mkdir(parents=True)
    make_tree(tree, big_file)
    summary = json.loads(ok(env, r, "deposit", "big", tree, "--json"))
    assert summary["files"] == 495
    ns = type("Deposited", (), {})()
    ns.env, ns.base, ns.r, ns.o, ns.stores, ns.tree = env, base, r, o, stores, tree
    ns.case_id, ns.summary = info["case_id"], summary
    return ns


def test_round_trip_through_two_file_replicas(deposited):
    d = deposited
    out = d.base / "out-file"
    report = json.loads(
        ok(
            d.env,
            d.o,
            "recover",
            "--shares",
            d.base / "shares",
            "--out",
            out,
            "--store",
            d.stores["a"],
            "--store",
            d.stores["b"],
            "--json",
        )
    )
    assert report["files"] == 495
    assert report["store_problems"] == []
    assert_same_tree(d.tree, out / "tree")
    assert (out / "tree" / "niño" / "ñandú ü.txt").read_text() == "unicode niño/ñandú ü.txt\n"
    assert (out / "tree" / "d0" / "sub0" / "deep" / "f000.dat").stat().st_size == 0
    assert (out / "tree" / "empty-dir").is_dir()
    assert sha(out / "tree" / "big.bin") == sha(d.tree / "big.bin")


def test_round_trip_through_s3_on_moto(deposited):
    d = deposited
    out = d.base / "out-s3"
    report = json.loads(
        ok(
            d.env,
            d.o,
            "recover",
            "--shares",
            d.base / "shares",
            "--out",
            out,
            "--store",
            d.stores["s3"],
            "--json",
        )
    )
    assert report["files"] == 495
    assert_same_tree(d.tree, out / "tree")


def test_losing_one_replica_copy_does_not_lose_data(deposited):
    d = deposited
    objs = sorted(p for p in (d.base / "storeA" / d.case_id / "objects").rglob("*") if p.is_file())
    victim = objs[len(objs) // 2]
    victim.unlink()
    out = d.base / "out-degraded"
    report = json.loads(
        ok(
            d.env,
            d.o,
            "recover",
            "--shares",
            d.base / "shares",
            "--out",
            out,
            "--store",
            d.stores["a"],
            "--store",
            d.stores["b"],
            "--json",
        )
    )
    assert_same_tree(d.tree, out / "tree")
    assert any(
        p.startswith(d.stores["a"]) and victim.name[:12] in p and "missing" in p
        for p in report["store_problems"]
    ), report["store_problems"]
