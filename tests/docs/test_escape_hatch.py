"""docs/format.md §9.4, followed literally: the recipe's script block is run as it stands, with
the stock `age` and `zstd` binaries, the `shamir` CLI of shamir-mnemonic and python3 with PyNaCl,
on a case with a rotation, a deposit that names fewer top-level folders than the one before,
compressed and uncompressed chunks, small files in packs of both forms, and a version 3 snapshot
stored as a zstd frame beside a version 2 one stored as JSON. No Velador code runs on the
recovery side.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest
import zstandard
from pyrage import x25519

from vault import case as C
from vault import deposit as D
from vault import identity, shares
from vault import state as S
from vault.clock import FakeClock
from vault.envelope import open_envelope
from vault.objects import stored_packed

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
PASSPHRASE = "señal de humo"  # typed here in NFD below: the recipe must normalize it


def recipe() -> str:
    text = (ROOT / "docs" / "format.md").read_text()
    m = re.search(r"<!-- recipe: escape-hatch[^>]*-->\n```sh\n(.*?)\n```", text, re.S)
    assert m, "format.md §9.4 has no escape-hatch recipe block"
    return m.group(1)


def tools(tmp: Path) -> Path:
    """A folder of the recipe's tools; a missing one fails naming its package."""
    need = {
        "age": ("age", shutil.which("age")),
        "zstd": ("zstd", shutil.which("zstd")),
        "shamir": (
            "shamir-mnemonic",
            shutil.which("shamir", path=str(Path(sys.executable).parent)),
        ),
    }
    missing = [f"`{t}` (package {pkg})" for t, (pkg, path) in need.items() if path is None]
    if missing:
        pytest.fail("the escape-hatch test needs " + ", ".join(missing))
    probe = subprocess.run([sys.executable, "-c", "import nacl.public"], capture_output=True)
    if probe.returncode:
        pytest.fail("the escape-hatch test needs python3 with PyNaCl (package python3-nacl)")
    bin_ = tmp / "bin"
    bin_.mkdir()
    for name, (_, path) in need.items():
        (bin_ / name).symlink_to(path)
    py = bin_ / "python3"  # a wrapper, not a link: a linked venv python loses its packages
    py.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    py.chmod(0o755)
    return bin_


def text(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    words = ["contrato", "pago", "empresa", "monto", "obra", "municipio", "licitación"]
    out, size = [], 0
    while size < n:
        line = f"{rnd.randint(1, 10**6)},{rnd.choice(words)},{rnd.random() * 1e6:.2f}\n"
        out.append(line)
        size += len(line.encode())
    return "".join(out).encode()[:n]


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def age_key(usb: Path, ident: identity.Identity) -> x25519.Identity:
    """The release key of one policy version, from its share files (test side only)."""
    bundle = C.read_share_dir(usb)
    mnemonics = [
        open_envelope(env, bundle.policy, ident.box_key).mnemonic for _, env in bundle.envelopes
    ]
    secret, _ = shares.combine_any(mnemonics, bundle.policy.release_recipient)
    return x25519.Identity.from_str(shares.age_identity_str(secret))


def snapshot_forms(store: Path, keys: list[x25519.Identity]) -> dict[int, bytes]:
    """Each stored snapshot's version -> the first byte of its age payload."""
    forms = {}
    for path in store.iterdir():
        payload = pyrage.decrypt(path.read_bytes(), keys)
        if payload[:4] == b"\x28\xb5\x2f\xfd":
            doc = zstandard.ZstdDecompressor().decompress(payload)
        else:
            doc = payload
        forms[json.loads(doc)["body"]["v"]] = payload[:1]
    return forms


def test_the_recipe_recovers_a_rotated_case_with_a_partial_deposit(tmp_path, monkeypatch):
    bin_ = tools(tmp_path)
    script = recipe()
    assert not re.search(r"\bvault\b|\bvelador (recover|case|deposit)\b", script)
    # Given a case of offline shares, deposited as two top-level folders
    rep = identity.create_identity(tmp_path / "r", "Ana", "reporter", "pw", 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", PASSPHRASE, 1)
    st = S.LocalState(tmp_path / "r")
    store = tmp_path / "store"
    nc = C.create_case(
        st,
        rep,
        "caso",
        [out.card],
        shares.ShareSpec(1, ((2, 3),)),
        [f"file://{store}"],
        FakeClock(),
        offline_dir=tmp_path / "usb1",
    )
    C.register_locally(st, rep, "caso", nc, {})
    src = tmp_path / "src"
    first = {
        "docs/ledger.csv": text(3 * MIB, 1),
        "docs/video.bin": os.urandom(MIB),
        "docs/borrar.txt": b"se borra antes del segundo deposito\n",
        "docs/datos.csv.zst": zstandard.ZstdCompressor().compress(text(200_000, 2)),
        "fotos/a.jpg": os.urandom(300_000),
        "fotos/notas/lugar.txt": text(50_000, 3),
    }
    write(src, first)
    (src / "fotos" / "vacia").mkdir()
    # (made as a writer before packs made it: a version 2 snapshot, stored as JSON)
    monkeypatch.setattr(D, "PACK_MAX", 0)  # no packs
    D.deposit(st, rep, st.case("caso"), [src / "docs", src / "fotos"], FakeClock())
    monkeypatch.undo()
    # and fotos/ deposited again alone with more notes (a version 3 snapshot, compressed pack)
    write(src, {f"fotos/notas/{i}.txt": text(30_000, 10 + i) for i in range(5)})
    D.deposit(st, rep, st.case("caso"), [src / "fotos"], FakeClock())
    fotos = tree(src / "fotos")
    # When the case is rotated (new key, new chunk key, new share files) and only docs/ is
    # deposited again, with a file deleted, one edited and one added
    C.rotate_case(st, rep, "caso", FakeClock(), offline_dir=tmp_path / "usb2")
    (src / "docs" / "borrar.txt").unlink()
    with open(src / "docs" / "ledger.csv", "ab") as fh:
        fh.write(b"999,nuevo,1.00\n")
    write(src, {"docs/nuevo.csv": text(400_000, 4)})
    write(src, {f"docs/chicos/{i}.bin": os.urandom(20_000 + i) for i in range(3)})
    D.deposit(st, rep, st.case("caso"), [src / "docs"], FakeClock())
    # (small files went into packs: one compressed (text) and one stored as it is (random))
    forms = {
        stored_packed(csize, plen)
        for csize, plen in st.db.execute(
            "SELECT DISTINCT o.csize, p.plen FROM packed p JOIN objects o "
            "ON o.case_id = p.case_id AND o.oid = p.pack"
        )
    }
    assert forms == {True, False}
    expected = {f"docs/{k}": v for k, v in tree(src / "docs").items()}
    expected |= {f"fotos/{k}": v for k, v in fotos.items()} | {"docs": None, "fotos": None}
    # Then the recipe, run as written with stock tools, gives the whole tree back
    env = {
        "PATH": f"{bin_}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LC_ALL": "C.UTF-8",
        "ID": str(tmp_path / "o" / "identity.json"),
        "PASSPHRASE": "sen\u0303al de humo",  # NFD: the recipe normalizes to NFC (§3.1)
        "SHARES": str(tmp_path / "usb2"),
        "STORE": str(store),
        "OUT": str(tmp_path / "out"),
    }
    (tmp_path / "out").mkdir()
    run = subprocess.run(
        ["bash", "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "newest: seq 3" in run.stdout
    assert tree(tmp_path / "out") == expected
    # and the store really held both forms and both keys
    assert len(list((store / nc.policy.case_id / "keyrings").iterdir())) == 1
    keys = [age_key(tmp_path / usb, out) for usb in ("usb1", "usb2")]
    forms = snapshot_forms(store / nc.policy.case_id / "snapshots", keys)
    assert forms == {3: b"\x28", 2: b"{"}  # packs: a zstd frame; the first deposit: JSON
