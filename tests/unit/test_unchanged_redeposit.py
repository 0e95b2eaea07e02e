"""An unchanged re-deposit is answered from the file cache with a few queries, not two per file
(issue 14: the whole command at most borg's time on a 2,000-file tree), and the cache is keyed by
the resolved path whichever way the folder was named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vault import case as C
from vault import deposit as D
from vault import identity, shares
from vault import state as S
from vault.clock import FakeClock


@pytest.fixture
def reporter(tmp_path: Path):
    rep = identity.create_identity(tmp_path / "r", "Ana", "reporter", "pw", 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", "pw", 1)
    st = S.LocalState(tmp_path / "r")
    nc = C.create_case(
        st, rep, "caso", [out.card], shares.ShareSpec(1, ((2, 3),)), [f"file://{tmp_path}/s1"],
        FakeClock(), offline_dir=tmp_path / "usb",
    )  # fmt: skip
    C.register_locally(st, rep, "caso", nc, {})
    return st, rep


def test_an_unchanged_tree_of_600_files_costs_a_few_queries(reporter, tmp_path):
    # Given a deposited tree of 600 small files in 12 folders
    st, rep = reporter
    src = tmp_path / "inv"
    for i in range(600):
        (src / f"d{i % 12}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 12}" / f"f{i}.csv").write_text(f"fila,{i}\n")
    first = D.deposit(st, rep, st.case("caso"), [src], FakeClock())
    # When it is deposited again unchanged, counting the statements the state database runs
    statements: list[str] = []
    st.db.conn.set_trace_callback(statements.append)
    again = D.deposit(st, rep, st.case("caso"), [src], FakeClock())
    st.db.conn.set_trace_callback(None)
    # Then every file comes from the cache, no snapshot is made, and the queries are batched
    assert again.unchanged and again.cached_files == 600 and again.snapshot_id == first.snapshot_id
    assert len(statements) < 20, len(statements)


def test_the_cache_is_found_through_a_symlink_and_a_relative_path(reporter, tmp_path, monkeypatch):
    # Given a tree deposited through its real path
    st, rep = reporter
    real = tmp_path / "real" / "inv"
    (real / "sub").mkdir(parents=True)
    (real / "a.txt").write_text("uno")
    (real / "sub" / "b.txt").write_text("dos")
    D.deposit(st, rep, st.case("caso"), [real], FakeClock())
    # When it is deposited through a symlinked parent, and then by a relative path
    os.symlink(tmp_path / "real", tmp_path / "link")
    via_link = D.deposit(st, rep, st.case("caso"), [tmp_path / "link" / "inv"], FakeClock())
    monkeypatch.chdir(tmp_path / "real")
    relative = D.deposit(st, rep, st.case("caso"), [Path("inv")], FakeClock())
    # Then both find every file in the cache (the key is the resolved path)
    assert via_link.cached_files == 2 and via_link.unchanged
    assert relative.cached_files == 2 and relative.unchanged
