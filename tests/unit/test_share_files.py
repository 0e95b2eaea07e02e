"""Offline share files (docs/format.md §5.3): what a reader checks beyond the signatures, and
which policy it picks when a folder holds share files of two versions of a case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vault import case as C
from vault import identity, shares
from vault import state as S
from vault.clock import FakeClock


@pytest.fixture
def rotated(tmp_path: Path):
    rep = identity.create_identity(tmp_path / "r", "Ana", "reporter", "pw", 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", "pw", 1)
    st = S.LocalState(tmp_path / "r")
    nc = C.create_case(
        st,
        rep,
        "caso",
        [out.card],
        shares.ShareSpec(1, ((2, 3),)),
        [f"file://{tmp_path}/store"],
        FakeClock(),
        offline_dir=tmp_path / "v1",
    )
    C.register_locally(st, rep, "caso", nc, {})
    rot = C.rotate_case(st, rep, "caso", FakeClock(), offline_dir=tmp_path / "v2")
    return tmp_path, nc.policy, rot.new.policy


def share_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.velador-share"))


def edit(path: Path, **fields: object) -> None:
    doc = json.loads(path.read_text())
    doc.update(fields)
    path.write_text(json.dumps(doc))


def test_a_file_whose_case_id_or_holder_disagrees_is_rejected(rotated):
    tmp, _, new = rotated
    files = share_files(tmp / "v2")
    assert len(files) == 3
    edit(files[0], case_id="0000000000000000000a")
    other = json.loads(files[2].read_text())["holder"]
    edit(files[1], holder=other)  # envelopes of h… under another holder's name
    bundle = C.read_share_dir(tmp / "v2")
    assert bundle.policy.hash == new.hash
    assert len(bundle.envelopes) == 1
    reasons = " | ".join(bundle.rejected)
    assert "names another case than its policy" in reasons
    assert "envelope of another holder" in reasons
    edit(files[2], holder="zz9")
    with pytest.raises(Exception, match="no valid share file"):
        C.read_share_dir(tmp / "v2")


def test_equally_many_files_of_two_versions_pick_the_newer(rotated):
    tmp, old, new = rotated
    both = tmp / "both"
    both.mkdir()
    # The old files renamed so that they sort first: the file order must not decide
    for f in share_files(tmp / "v1"):
        (both / f"0-old-{f.name}").write_bytes(f.read_bytes())
    for f in share_files(tmp / "v2"):
        (both / f.name).write_bytes(f.read_bytes())
    bundle = C.read_share_dir(both)
    assert bundle.policy.hash == new.hash and new.replaces == old.hash
    assert sum("another version of the case" in r for r in bundle.rejected) == 3
