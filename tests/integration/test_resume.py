"""Kill a real `velador deposit` half-way with SIGKILL, run it again (format.md §6.6).

The second run must upload only what is missing, every store must end up holding every object the
final manifest names, recovery must be byte-identical, and at no point may a snapshot in any store
name an object that is not in every store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pyrage import x25519

from vault.case import read_share_dir
from vault.envelope import addressed_to, open_envelope
from vault.identity import unlock_identity
from vault.manifest import open_snapshot
from vault.recover import Report, recover_key
from vault.shares import age_identity_str
from vault.stores import FileStore, validate_key

pytestmark = [pytest.mark.slow, pytest.mark.integration]

VELADOR = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "velador"
MIB = 1024 * 1024
PW = "resume test passphrase"


def run(env, home: Path, *args: object, check: bool = True) -> str:
    r = subprocess.run(
        [str(VELADOR), "--home", str(home), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r.stdout


def objects_in(store: Path, case_id: str) -> set[str]:
    """Object keys a reader sees (FileStore.list ignores staged temp files)."""
    return set(FileStore(store).list(f"{case_id}/objects/"))


def snapshots_name_only_present_objects(base: Path, stores: list[Path], case_id: str) -> int:
    """Open every snapshot in every store; each object it names must be in every store."""
    ident = unlock_identity(base / "outlet", PW)
    bundle = read_share_dir(base / "shares")
    policy = bundle.policy
    mnemonics = [
        open_envelope(env, policy, ident.box_key).mnemonic
        for _, env in bundle.envelopes
        if addressed_to(env, ident.card)
    ]
    key = x25519.Identity.from_str(age_identity_str(recover_key(policy, mnemonics, Report())))
    present = [objects_in(s, case_id) for s in stores]
    seen = 0
    for s in stores:
        for k in FileStore(s).list(f"{case_id}/snapshots/"):
            sid = k.rsplit("/", 1)[1]
            m = open_snapshot(FileStore(s).get(k), [key], policy.reporter.sign_pk, sid, case_id)
            for oid in m.object_ids():
                okey = validate_key(f"{case_id}/objects/{oid[:2]}/{oid}")
                assert all(okey in p for p in present), f"snapshot {sid[:12]} names missing {oid}"
            seen += 1
    return seen


def test_killed_deposit_resumes_and_uploads_only_what_is_missing(tmp_path):
    env = dict(os.environ, VELADOR_PASSPHRASE=PW, VELADOR_INSECURE_FAST_KDF="1")
    r, o = tmp_path / "reporter", tmp_path / "outlet"
    run(env, r, "id", "new", "--name", "Rita")
    run(env, o, "id", "new", "--name", "Diario", "--role", "outlet")
    run(env, r, "contact", "add", run(env, o, "id", "card").strip(), "--alias", "diario")
    stores = [tmp_path / "storeA", tmp_path / "storeB"]
    info = json.loads(
        run(
            env,
            r,
            "case",
            "create",
            "inv",
            "--recipient",
            "diario",
            "--threshold",
            "2",
            "--shares",
            "3",
            "--offline-dir",
            tmp_path / "shares",
            *[a for s in stores for a in ("--store", s.as_uri())],
            "--json",
        )
    )
    case_id = info["case_id"]
    # Given a tree large enough to need several commits of 64 objects
    tree = tmp_path / "data" / "inv"
    (tree / "sub").mkdir(parents=True)
    for i in range(5):
        with open(tree / ("sub" if i % 2 else ".") / f"part{i}.bin", "wb") as fh:
            for _ in range(8):
                fh.write(os.urandom(8 * MIB))
    (tree / "notes.txt").write_text("fuente A, 12 de marzo\n")
    total = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())

    # When a deposit is killed (SIGKILL, whole process group) once some objects are visible
    proc = subprocess.Popen(
        [str(VELADOR), "--home", str(r), "deposit", "inv", str(tree), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while not objects_in(stores[0], case_id):
            assert proc.poll() is None, "the deposit ended before any object was visible"
            assert time.monotonic() < deadline, "no object appeared in the store in 120 s"
            time.sleep(0.005)  # polling interval, not a guess at timing
        # (a snapshot written before its objects would be caught here and at the end)
        assert snapshots_name_only_present_objects(tmp_path, stores, case_id) == 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the deposit had already finished: tree too small"
    before = [objects_in(s, case_id) for s in stores]
    assert before[0], "nothing was uploaded before the kill"
    assert snapshots_name_only_present_objects(tmp_path, stores, case_id) == 0

    # Then running it again uploads only what was missing
    again = json.loads(run(env, r, "deposit", "inv", tree, "--json"))
    assert again["bytes_total"] == total
    after = [objects_in(s, case_id) for s in stores]
    assert after[0] == after[1] and before[0] <= after[0]
    # bytes_uploaded counts every store: exactly the objects that were missing, and the snapshot
    missing = sum(
        (s / k).stat().st_size for s, b, a in zip(stores, before, after, strict=True) for k in a - b
    )
    snaps = [p for s in stores for p in (s / case_id / "snapshots").iterdir()]
    assert again["bytes_uploaded"] == missing + sum(p.stat().st_size for p in snaps)
    assert 0 < again["bytes_uploaded"] < total * len(stores)
    # every store holds every object of the final manifest, byte for byte the same
    assert snapshots_name_only_present_objects(tmp_path, stores, case_id) == 2
    for k in after[0]:
        assert FileStore(stores[0]).get(k) == FileStore(stores[1]).get(k)
    # a third run has nothing left to upload
    third = json.loads(run(env, r, "deposit", "inv", tree, "--json"))
    assert third["bytes_uploaded"] == 0 and third["unchanged"]

    # and recovery from either store alone is byte-identical
    for s in stores:
        out = tmp_path / f"out-{s.name}"
        run(env, o, "recover", "--shares", tmp_path / "shares", "--out", out, "--store", s.as_uri())
        for p in tree.rglob("*"):
            if p.is_file():
                assert (out / "inv" / p.relative_to(tree)).read_bytes() == p.read_bytes(), p
