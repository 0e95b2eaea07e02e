"""Recovery writes many files through one pipeline and makes them durable in batches (format.md
§9): every file byte-identical with its mode and time, no file under its name before a syncfs
has made its bytes durable, no fsync per file, and no temp file left after a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyrage import x25519

from vault import case as C
from vault import deposit as D
from vault import envelope as E
from vault import identity, shares
from vault import recover as R
from vault import state as S
from vault.clock import FakeClock
from vault.errors import StoreError
from vault.objects import object_key
from vault.stores import open_store


@pytest.fixture
def deposited(tmp_path: Path):
    rep = identity.create_identity(tmp_path / "r", "Ana", "reporter", "pw", 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", "pw", 1)
    st = S.LocalState(tmp_path / "r")
    nc = C.create_case(
        st, rep, "caso", [out.card], shares.ShareSpec(1, ((2, 3),)), [f"file://{tmp_path}/s1"],
        FakeClock(), offline_dir=tmp_path / "usb",
    )  # fmt: skip
    C.register_locally(st, rep, "caso", nc, {})
    ms = [
        E.open_envelope(envs[0], nc.policy, out.box_key).mnemonic for envs in nc.envelopes.values()
    ]
    key = shares.age_identity_str(R.recover_key(nc.policy, ms[:2], R.Report()))
    src = tmp_path / "inv"
    for i in range(200):
        folder = src / f"d{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:03d}.csv").write_bytes(os.urandom(i * 37))  # f000 is empty
        os.chmod(folder / f"f{i:03d}.csv", 0o640)
        os.utime(folder / f"f{i:03d}.csv", (1_700_000_000 + i, 1_700_000_000 + i))
    D.deposit(st, rep, st.case("caso"), [src], FakeClock())
    return tmp_path, nc.policy, key, src


@pytest.mark.parametrize("jobs", [1, 2])
def test_many_files_come_back_whole_with_one_syncfs_per_batch(deposited, monkeypatch, jobs: int):
    tmp, policy, key, src = deposited
    syncs: list[set[str]] = []
    fsyncs: list[int] = []

    def spy_sync(folder: Path) -> None:
        # Given the names in place at each syncfs: a file must never be visible before one
        syncs.append({p.name for p in (tmp / "out").rglob("*.csv")})

    monkeypatch.setattr(R, "sync_filesystem", spy_sync)
    monkeypatch.setattr(R, "SETTLE_FILES", 64)
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd))
    # When 200 files are recovered
    report = R.restore(policy, [key], [f"file://{tmp}/s1"], tmp / "out", jobs=jobs)
    # Then every one is byte-identical, with its mode and time
    assert report.files == 200
    for i in range(200):
        rel = f"inv/d{i % 7}/f{i:03d}.csv"
        got = tmp / "out" / rel
        assert got.read_bytes() == (src / rel.split("/", 1)[1]).read_bytes()
        assert got.stat().st_mode & 0o777 == 0o640
        assert got.stat().st_mtime == 1_700_000_000 + i
    # made durable by 4 syncfs for the batches of 64 (each before their renames) and one after
    # the last renames, and not by an fsync per file
    assert len(syncs) == 5 and fsyncs == []
    assert [len(s) for s in syncs] == [0, 64, 128, 192, 200]
    assert not list((tmp / "out").rglob("*.velador-tmp"))


def test_a_failed_recovery_leaves_no_temp_file(deposited):
    tmp, policy, key, src = deposited
    # Given a store that lost the object of one file in the middle of the tree
    victim = (src / "d3" / "f150.csv").read_bytes()
    from vault.objects import object_id
    from vault.state import LocalState, open_sealed

    st = LocalState(tmp / "r")
    ident = identity.unlock_identity(tmp / "r", "pw")
    secrets = open_sealed(st.case("caso").sealed_secrets, ident.box_key)
    oid = object_id(bytes.fromhex(secrets["chunk_key"]), victim)
    stores = [open_store(f"file://{tmp}/s1")]
    (m,) = R.load_chain(policy, [x25519.Identity.from_str(key)], stores, R.Report())
    held_in = m.placed.get(oid, (oid, 0))[0]  # a small file's chunk is in a pack (format §6.3)
    (tmp / "s1" / object_key(policy.case_id, held_in)).unlink()
    # When recovery runs, it fails on that file, and no temp file is left behind
    with pytest.raises(StoreError, match="missing or damaged"):
        R.restore(policy, [key], [f"file://{tmp}/s1"], tmp / "out", jobs=2)
    assert not list((tmp / "out").rglob("*.velador-tmp"))
    assert not (tmp / "out" / "inv" / "d3" / "f150.csv").exists()
