"""Regressions found while writing docs/format.md: material must not be lost at recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault import case as C
from vault import deposit as D
from vault import envelope as E
from vault import identity, shares
from vault import recover as R
from vault import state as S
from vault.clock import FakeClock
from vault.errors import FormatError


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
    return tmp_path, rep, st, nc.policy, shares.age_identity_str(secret)


def test_deposit_refuses_names_that_differ_only_in_case(setup):
    # Given a folder with Notes.txt and notes.txt (fine on Linux, one file on other systems)
    tmp, rep, st, _, _ = setup
    src = tmp / "inv"
    src.mkdir()
    (src / "Notes.txt").write_text("a")
    (src / "notes.txt").write_text("b")
    # Then the deposit is refused while the reporter can still act, not at recovery
    with pytest.raises(FormatError, match="cannot be recovered safely"):
        D.deposit(st, rep, st.case("caso"), [src], FakeClock())
    assert st.snapshots(st.case("caso").case_id) == []


def test_one_damaged_snapshot_replica_does_not_lose_the_snapshot(setup):
    tmp, rep, st, policy, key = setup
    src = tmp / "inv"
    src.mkdir()
    (src / "a.txt").write_text("hola")
    res = D.deposit(st, rep, st.case("caso"), [src], FakeClock())
    # Given the first store's copy of the snapshot is corrupted
    snap = tmp / "s1" / policy.case_id / "snapshots" / res.snapshot_id
    data = bytearray(snap.read_bytes())
    data[-5] ^= 0xFF
    snap.write_bytes(bytes(data))
    # Then recovery uses the second store's good copy and names the bad one
    report = R.restore(policy, [key], list(policy.stores), tmp / "out")
    assert (tmp / "out" / "inv" / "a.txt").read_text() == "hola"
    assert any("s1" in p for p in report.chain_problems)


def test_share_errors_do_not_quote_the_mnemonic(setup):
    _, _, _, _, _ = setup
    bad = "academic acid acrobat romp " * 5
    with pytest.raises(FormatError) as exc:
        shares.check_mnemonic(bad)
    assert "academic" not in str(exc.value)
