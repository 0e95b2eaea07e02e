"""Deposits of files that change while they are read (format.md §6.6): re-read or left out,
never a file made of two versions, never a neighbour's chunks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from vault import case as C
from vault import deposit as D
from vault import envelope as E
from vault import identity, shares
from vault import recover as R
from vault import state as S
from vault.clock import FakeClock
from vault.objects import object_key
from vault.stores import open_store

MIB = 1024 * 1024


@pytest.fixture
def setup(tmp_path: Path):
    rep = identity.create_identity(tmp_path / "r", "Ana", "reporter", "pw", 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", "pw", 1)
    st = S.LocalState(tmp_path / "r")
    stores = [f"file://{tmp_path}/s1", f"file://{tmp_path}/s2"]
    nc = C.create_case(
        st,
        rep,
        "caso",
        [out.card],
        shares.ShareSpec(1, ((2, 3),)),
        stores,
        FakeClock(),
        offline_dir=tmp_path / "usb",
    )
    C.register_locally(st, rep, "caso", nc, {})
    ms = [
        E.open_envelope(envs[0], nc.policy, out.box_key).mnemonic for envs in nc.envelopes.values()
    ]
    secret = R.recover_key(nc.policy, ms[:2], R.Report())
    ns = type("Setup", (), {})()
    ns.tmp, ns.rep, ns.st, ns.policy = tmp_path, rep, st, nc.policy
    ns.key = shares.age_identity_str(secret)
    return ns


def _tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _chunk_file_that(mutate):
    """chunk_file that calls `mutate(path, pass_no)` after yielding the first chunk of a file."""
    real = D.chunk_file
    passes: dict[Path, int] = {}

    def chunk_file(path: Path, seed: int):
        passes[path] = passes.get(path, 0) + 1
        for i, c in enumerate(real(path, seed)):
            yield c
            if i == 0:
                mutate(path, passes[path])

    return chunk_file


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_file_that_shrinks_while_read_is_read_again(setup, monkeypatch, jobs):
    # Given two files, a.bin and b.bin, of several chunks each
    src = setup.tmp / "inv"
    src.mkdir()
    a, b = os.urandom(6 * MIB), os.urandom(6 * MIB)
    (src / "a.bin").write_bytes(a)
    (src / "b.bin").write_bytes(b)
    shrunk = a[: 2 * MIB - 7]

    def mutate(path: Path, n: int) -> None:
        if path.name == "a.bin" and n == 1:
            with open(path, "r+b") as fh:  # same inode, fewer bytes: as a truncating editor does
                fh.truncate(len(shrunk))

    monkeypatch.setattr(D, "chunk_file", _chunk_file_that(mutate))
    # When a.bin shrinks right after its first chunk was cut
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=jobs)
    # Then it is read again, whole, and b.bin keeps its own chunks
    assert res.changed == []
    assert res.files == 2 and res.bytes_total == len(shrunk) + len(b)
    R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / "out")
    assert _tree(setup.tmp / "out") == {"inv/a.bin": shrunk, "inv/b.bin": b}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_file_that_keeps_changing_is_left_out_with_a_warning(setup, monkeypatch, caplog, jobs):
    src = setup.tmp / "inv"
    src.mkdir()
    log_bytes, b = os.urandom(3 * MIB), os.urandom(3 * MIB)
    (src / "app.log").write_bytes(log_bytes)
    (src / "b.bin").write_bytes(b)

    def mutate(path: Path, n: int) -> None:
        if path.name == "app.log":  # a log being written on every pass
            with open(path, "ab") as fh:
                fh.write(b"another line\n")

    monkeypatch.setattr(D, "chunk_file", _chunk_file_that(mutate))
    with caplog.at_level(logging.WARNING, logger="velador.deposit"):
        res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=jobs)
    path = str(src / "app.log")
    assert res.changed == [path]  # the CLI prints one warning line per entry
    assert caplog.messages == []  # and the library does not print a second one through logging
    # The snapshot holds the other file, intact, and nothing of the changing one
    R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / "out")
    assert _tree(setup.tmp / "out") == {"inv/b.bin": b}


def test_a_file_replaced_by_rename_while_read_is_read_again(setup, monkeypatch):
    src = setup.tmp / "inv"
    src.mkdir()
    old, new = os.urandom(5 * MIB), os.urandom(5 * MIB)
    (src / "doc.odt").write_bytes(old)

    def mutate(path: Path, n: int) -> None:
        if n == 1:  # an editor saving: write a new file, rename it over the old name
            tmp = path.with_name(".doc.odt.new")
            tmp.write_bytes(new)
            os.replace(tmp, path)

    monkeypatch.setattr(D, "chunk_file", _chunk_file_that(mutate))
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
    assert res.changed == []
    R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / "out")
    assert _tree(setup.tmp / "out") == {"inv/doc.odt": new}


def test_a_short_read_between_good_reads_is_a_changed_file(setup, monkeypatch):
    # Given a file whose second chunk comes back short (it shrank, then grew again) while the
    # chunks after it read fine, as happens when two workers open the file at different moments
    src = setup.tmp / "inv"
    src.mkdir()
    data = os.urandom(8 * MIB)
    (src / "a.bin").write_bytes(data)
    real = D.store_task
    calls = []

    def store_task(task):
        out = []
        for r in real(task):  # one result per chunk, whether the task was a chunk or a pack
            calls.append(r[1])
            if len(calls) == 2:  # the second chunk of the first pass only
                # (a pack this result carries stays with it: the worker stored it either way)
                r = (*r[:2], "", 0, 0, None, 0, False, [], True, None, r[11])
            out.append(r)
        return out

    monkeypatch.setattr(D, "store_task", store_task)
    res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    # Then the file is read again rather than stored with a hole, or refused as out of order
    assert res.changed == []
    assert len(set(calls)) < len(calls)  # some offsets were read twice
    R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / "out")
    assert _tree(setup.tmp / "out") == {"inv/a.bin": data}


def test_every_recorded_object_is_in_every_store_with_identical_bytes(setup):
    # Given a deposit with a chunk repeated inside one run (two copies of one file)
    src = setup.tmp / "inv"
    src.mkdir()
    data = os.urandom(3 * MIB)
    for name in ("a.bin", "copy-of-a.bin", "b.bin"):
        (src / name).write_bytes(data if name != "b.bin" else os.urandom(MIB))
    D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
    stores = [open_store(u) for u in setup.policy.stores]
    rows = setup.st.objects(setup.policy.case_id)
    assert rows
    for row in rows:
        key = object_key(setup.policy.case_id, row["oid"])
        blobs = [s.get(key) for s in stores]
        assert blobs[0] == blobs[1] and len(blobs[0]) == row["csize"]
    # and no staged temp file is left behind in any store
    for s in ("s1", "s2"):
        assert not [p for p in (setup.tmp / s).rglob(".*.tmp")]


def test_replicas_of_a_chunk_staged_twice_are_made_identical(tmp_path):
    # Given a chunk that a store without staging (S3) took twice, so that its replicas differ
    stores = [open_store((tmp_path / n).as_uri()) for n in ("a", "b", "c")]
    oid = "ab" * 32
    key = object_key("case0001", oid)
    stores[0].put(key, b"first ciphertext")
    stores[1].put(key, b"second ciphertext")
    stores[2].put(key, b"first ciphertext")
    committer = D._Committer(tmp_path / "state.db", "case0001", stores)
    try:
        # When the committer evens them out before recording the object
        row = committer._make_replicas_identical(oid)
    finally:
        committer.close()
    # Then every store holds the first store's bytes, and that is the hash recorded
    assert [s.get(key) for s in stores] == [b"first ciphertext"] * 3
    assert row == {
        "case_id": "case0001",
        "oid": oid,
        "csize": len(b"first ciphertext"),
        "chash": D.cipher_hash(b"first ciphertext"),
    }


def test_the_deposit_log_names_no_path(setup, monkeypatch, caplog):
    # Given a file that keeps changing under a folder whose name says too much (issue 11 §6)
    src = setup.tmp / "fuentes-fiscalia"
    src.mkdir()
    (src / "testigo-protegido.log").write_bytes(os.urandom(3 * MIB))

    def mutate(path: Path, n: int) -> None:
        with open(path, "ab") as fh:
            fh.write(b"another line\n")

    monkeypatch.setattr(D, "chunk_file", _chunk_file_that(mutate))
    # When it is deposited with every log record kept
    with caplog.at_level(logging.DEBUG):
        res = D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=1)
    # Then the caller still gets the path to show, but no log record names the folder or file
    assert res.changed == [str(src / "testigo-protegido.log")]
    assert caplog.messages == [
        "1 file(s) changed while being read and were left out of this snapshot"
    ]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "fuentes-fiscalia" not in logged and "testigo" not in logged
    assert str(setup.tmp) not in logged


def test_worker_threads_leave_no_file_open(setup):
    # Worker threads keep the file they read or write open between chunks; the agent deposits
    # for days in one process, so each thread must close it as the pool ends
    # (vault.objects.end_worker). SQLite keeps the descriptors of closed connections to a file
    # the process still has open (POSIX locks) and reuses them: so count after a first round.
    src = setup.tmp / "inv"
    src.mkdir()
    for n in range(3):
        for i in range(3):
            (src / f"f{i}.bin").write_bytes(os.urandom(3 * MIB))
        D.deposit(setup.st, setup.rep, setup.st.case("caso"), [src], FakeClock(), jobs=2)
        R.restore(setup.policy, [setup.key], list(setup.policy.stores), setup.tmp / f"o{n}", jobs=2)
        if n == 0:
            before = set(os.listdir("/proc/self/fd"))
    assert set(os.listdir("/proc/self/fd")) <= before
    assert _tree(setup.tmp / "o2") == {
        f"inv/f{i}.bin": (src / f"f{i}.bin").read_bytes() for i in range(3)
    }
