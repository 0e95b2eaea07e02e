"""`make demo`: the offline story end to end on this machine, in a temp folder it removes.

A reporter splits a case key 2-of-3 between offline holders (USB sticks), deposits a sample
investigation with instructions into two replicated folder stores, one replica loses an object,
and an outlet holding two shares recovers everything, verified byte for byte. Escrow nodes (the
automatic switch) join this story when they land (issue 4).
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VELADOR = [sys.executable, "-m", "cli.main"]


def main() -> int:
    start = time.monotonic()
    timeline: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="velador-demo-"))
    # Demo only: fast Argon2id so the story runs in seconds. Real identities never set this.
    env = dict(os.environ, VELADOR_PASSPHRASE="demo passphrase", VELADOR_INSECURE_FAST_KDF="1")

    def step(text: str) -> None:
        timeline.append(f"{time.monotonic() - start:6.1f}s  {text}")
        print(f"\n== {text}", flush=True)

    def v(home: str, *args: str, check: bool = True) -> str:
        cmd = [*VELADOR, "--home", str(root / home), *args]
        print("$ velador --home", home, " ".join(args), flush=True)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root)
        out = (res.stdout + res.stderr).strip()
        if out:
            print("  " + out.replace("\n", "\n  "), flush=True)
        if check and res.returncode != 0:
            raise SystemExit(f"demo step failed (exit {res.returncode})")
        return res.stdout

    try:
        step("Ana, a reporter, and two partner outlets make identities")
        v("ana", "id", "new", "--name", "Ana Reportera")
        v("diario", "id", "new", "--name", "El Diario del Norte", "--role", "outlet")
        v("semanario", "id", "new", "--name", "Semanario Sur", "--role", "outlet")

        step("They exchange contact cards (and compare fingerprints aloud)")
        for outlet in ("diario", "semanario"):
            v("ana", "contact", "add", v(outlet, "id", "card").strip(), "--alias", outlet)
            v(outlet, "contact", "add", v("ana", "id", "card").strip(), "--alias", "ana")

        step("Ana creates a case: key split 2-of-3, sealed to both outlets, then erased")
        s1, s2 = f"file://{root / 'store-a'}", f"file://{root / 'store-b'}"
        v("ana", "case", "create", "puerto", "--recipient", "diario", "--recipient", "semanario",
          "--threshold", "2", "--shares", "3", "--offline-dir", str(root / "usb"),
          "--store", s1, "--store", s2)

        step("Ana deposits her investigation with instructions for the outlets")
        inv = root / "investigacion-puerto"
        (inv / "fuentes").mkdir(parents=True)
        (inv / "notas.md").write_text("# Puerto\nContratos inflados, 2019-2024.\n", encoding="utf-8")
        (inv / "fuentes" / "entrevista-ñ.txt").write_text("Testimonio (anonimizado).\n", "utf-8")
        (inv / "fuentes" / "contratos.bin").write_bytes(os.urandom(3 * 1024 * 1024))
        (inv / "vacío.txt").write_bytes(b"")
        instructions = root / "instrucciones.txt"
        instructions.write_text("Publicar notas.md primero. Proteger a las fuentes.\n", "utf-8")
        v("ana", "deposit", "puerto", str(inv), "--instructions", str(instructions))
        v("ana", "deposit", "puerto", str(inv))  # unchanged: nothing uploaded
        v("ana", "snapshots", "puerto")

        step("A replica loses an object; verify names it, a re-deposit repairs it")
        victim = next((root / "store-b").rglob("objects/*/*"))
        victim.unlink()
        v("ana", "verify", "puerto", check=False)
        v("ana", "deposit", "puerto", str(inv), "--instructions", str(instructions))
        v("ana", "verify", "puerto", "--deep")

        step("Ana goes silent. Two of the three USB holders hand their files to El Diario")
        got = root / "diario-shares"
        got.mkdir()
        for share in sorted((root / "usb").glob("*.velador-share"))[:2]:
            shutil.copy(share, got)
        v("diario", "recover", "--shares", str(got), "--out", str(root / "recuperado"))

        step("Check: the recovered tree is byte-identical")
        cmp = filecmp.dircmp(inv, root / "recuperado" / inv.name)
        same = _identical(cmp)
        print(f"  byte-identical: {same}")
        if not same:
            raise SystemExit("demo failed: recovered files differ")
        step("Done")
        print("\nTimeline:\n" + "\n".join(timeline))
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _identical(cmp: filecmp.dircmp[str]) -> bool:
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(_identical(s) for s in cmp.subdirs.values())


if __name__ == "__main__":
    sys.exit(main())
