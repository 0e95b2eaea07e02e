"""Dedup savings on an evolving investigation, beside re-encrypting the whole tree each time.

A reporter deposits the same investigation folder ten times while it grows and changes, as real
work does: documents edited in the middle (bytes inserted, so everything after them shifts), a
spreadsheet and a notes file appended to, new recordings added, a document moved to an archive
folder, a recording or a document deleted. Each deposit goes through the real `velador deposit`
command into a file:// store. Deduplication is what makes a daily deposit affordable over a slow
or watched connection, so the figure is what each deposit uploads, not only what it stores.

Baseline beside each deposit: the naive approach, `tar -cf - TREE | age -e -r KEY`, i.e. the
whole tree encrypted again, which uploads its full size every time.

Per deposit: files and logical tree size, velador's bytes uploaded and new chunks (from
`velador deposit --json`), the store's cumulative size on disk (apparent bytes of every file in
the store: chunks and snapshots), the naive output size and its cumulative sum, and the wall time
of both. After the last deposit the case is recovered with `velador recover` from the offline
shares and compared file by file with the tree, so the savings are not bought with lost data.

The tree is made from a seeded generator: the same --scale-mib and --seed give the same bytes.
Prints a table; asserts nothing.

Run: .venv/bin/python bench/dedup.py [--scale-mib 64] [--deposits 10] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deposit import load, machine  # stable helpers only

BIN = Path(sys.executable).parent
VELADOR = str(BIN / "velador")
MIB = 1024 * 1024


class Investigation:
    """A folder of work that changes between deposits like a real investigation's.

    Sizes scale with `scale` (bytes): at deposit 1 about 0.9 x scale, growing by about 0.1 x scale
    per deposit. Random bytes throughout (recordings and scans do not compress, and neither
    velador nor the baseline compresses), so any saving is deduplication, not compression.
    """

    def __init__(self, root: Path, scale: int, seed: int) -> None:
        self.root = root
        self.scale = scale
        self.rng = random.Random(seed)
        self.log: list[str] = []

    def _bytes(self, n: int) -> bytes:
        return self.rng.randbytes(max(0, n))

    def _write(self, rel: str, n: int) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            left = n
            while left > 0:
                step = min(left, 8 * MIB)
                fh.write(self._bytes(step))
                left -= step

    def _append(self, rel: str, n: int) -> None:
        with open(self.root / rel, "ab") as fh:
            fh.write(self._bytes(n))

    def _insert_middle(self, rel: str, n: int) -> None:
        """Insert n new bytes in the middle: every byte after them moves (an edited draft)."""
        path = self.root / rel
        data = path.read_bytes()
        mid = len(data) // 2
        path.write_bytes(data[:mid] + self._bytes(n) + data[mid:])

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def first(self) -> None:
        """Deposit 1: documents, recordings, a leaked spreadsheet, a notes file."""
        s = self.scale
        for i in range(12):
            self._write(f"docs/doc-{i:02d}.odt", s // 32)
        for i in range(3):
            self._write(f"media/interview-{i}.m4a", s // 8)
        self._write("data/leak.csv", s // 8)
        self._write("notes/log.md", 64 * 1024)
        self.log = ["12 documents, 3 recordings, a spreadsheet, a notes file"]

    def evolve(self, k: int) -> None:
        """The changes between deposit k-1 and deposit k (k >= 2)."""
        s = self.scale
        docs = sorted(p.relative_to(self.root).as_posix() for p in (self.root / "docs").glob("*"))
        edited = [docs[(2 * k) % len(docs)], docs[(2 * k + 1) % len(docs)]]
        for rel in edited:
            self._insert_middle(rel, 4096)
        self._append("data/leak.csv", s // 64)
        self._append("notes/log.md", 8 * 1024)
        self._write(f"media/rec-{k:02d}.m4a", s // 16)
        self._write(f"docs/new-{k:02d}a.odt", s // 128)
        self._write(f"docs/new-{k:02d}b.odt", s // 128)
        what = [
            f"2 documents edited in the middle ({', '.join(edited)})",
            "spreadsheet and notes appended",
            "1 recording and 2 documents added",
        ]
        if k % 3 == 0:  # a finished document moves to the archive
            src = docs[k % len(docs)]
            dst = f"archive/{k:02d}/{Path(src).name}"
            (self.root / dst).parent.mkdir(parents=True, exist_ok=True)
            (self.root / src).rename(self.root / dst)
            what.append(f"{src} moved to {dst}")
        if k % 4 == 0:  # a bad recording or a duplicate draft is deleted
            media = sorted((self.root / "media").glob("*"))
            victim = media[k % len(media)]
            victim.unlink()
            what.append(f"media/{victim.name} deleted")
        if k % 5 == 0:  # a superseded draft is deleted
            (self.root / f"docs/new-{k - 1:02d}b.odt").unlink()
            what.append(f"docs/new-{k - 1:02d}b.odt deleted")
        self.log = what


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> BLAKE2b of the contents, for every file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h = hashlib.blake2b()
            with open(p, "rb") as fh:
                while block := fh.read(MIB):
                    h.update(block)
            out[p.relative_to(root).as_posix()] = h.hexdigest()
    return out


def disk_bytes(root: Path) -> int:
    """Apparent size of every file under root (what a store bills for)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def sh(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run cmd; (wall seconds, stdout). A failure stops the benchmark with its stderr."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{proc.stderr}")
    return elapsed, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale-mib", type=int, default=64, help="size of the first tree, about")
    ap.add_argument("--deposits", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args()
    if args.deposits < 1 or args.scale_mib < 1:
        raise SystemExit("--deposits and --scale-mib must be at least 1")
    if not shutil.which("age") or not shutil.which("tar"):
        raise SystemExit("the baseline needs 'tar' and the stock 'age' (apt-get install age)")
    root = Path(args.dir or tempfile.mkdtemp(prefix="velador-dedup-"))
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VELADOR_PASSPHRASE="bench run passphrase", VELADOR_INSECURE_FAST_KDF="1")
    load_before = load()
    rep, outlet, store, usb = root / "rep", root / "o1", root / "store", root / "usb"
    tree = root / "investigation"
    naive_dir = root / "naive"
    naive_dir.mkdir()

    def v(home: Path, *a: str) -> list[str]:
        return [VELADOR, "--home", str(home), *a]

    try:
        sh(v(rep, "id", "new", "--name", "Bench Reporter"), env)
        sh(v(outlet, "id", "new", "--name", "Bench Outlet", "--role", "outlet"), env)
        card = sh(v(outlet, "id", "card"), env)[1].strip()
        sh(v(rep, "contact", "add", card, "--alias", "o1"), env)
        sh(
            v(
                rep,
                *("case", "create", "dedup", "--recipient", "o1", "--threshold", "2"),
                *("--shares", "3", "--offline-dir", str(usb), "--store", f"file://{store}"),
            ),
            env,
        )
        key = root / "age.key"
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        pub = subprocess.run(
            ["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True
        ).stdout.strip()

        inv = Investigation(tree, args.scale_mib * MIB, args.seed)
        rows = []
        naive_total = 0
        print(
            "| # | files | tree MB | velador uploaded MB | new chunks | store MB (cumulative) "
            "| naive tar+age MB | naive cumulative MB | deposit s | naive s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for k in range(1, args.deposits + 1):
            if k == 1:
                inv.first()
            else:
                inv.evolve(k)
            t_dep, out = sh(v(rep, "deposit", "dedup", str(tree), "--json"), env)
            dep = json.loads(out)
            naive = naive_dir / f"deposit-{k:02d}.tar.age"
            t_naive, _ = sh(
                [
                    "sh",
                    "-c",
                    'tar -C "$0" -cf - . | age -e -r "$1" -o "$2"',
                    str(tree),
                    pub,
                    str(naive),
                ],
                env,
            )
            naive_bytes = naive.stat().st_size
            naive_total += naive_bytes
            row = {
                "deposit": k,
                "changes": inv.log,
                "files": len(inv.files()),
                "tree_bytes": inv.size(),
                "bytes_uploaded": dep["bytes_uploaded"],
                "new_chunks": dep["new_chunks"],
                "known_chunks": dep["known_chunks"],
                "store_bytes": disk_bytes(store),
                "deposit_s": t_dep,
                "naive_bytes": naive_bytes,
                "naive_cumulative_bytes": naive_total,
                "naive_s": t_naive,
            }
            rows.append(row)
            print(
                f"| {k} | {row['files']} | {row['tree_bytes'] / 1e6:.1f} "
                f"| {row['bytes_uploaded'] / 1e6:.1f} | {row['new_chunks']} "
                f"| {row['store_bytes'] / 1e6:.1f} | {naive_bytes / 1e6:.1f} "
                f"| {naive_total / 1e6:.1f} | {t_dep:.2f} | {t_naive:.2f} |",
                flush=True,
            )

        out_dir = root / "recovered"
        sh(v(outlet, "recover", "--shares", str(usb), "--out", str(out_dir), "--json"), env)
        identical = tree_digest(out_dir / tree.name) == tree_digest(tree)
        uploaded = sum(r["bytes_uploaded"] for r in rows)
        print()
        print(
            f"total uploaded: velador {uploaded / 1e6:.1f} MB, naive {naive_total / 1e6:.1f} MB "
            f"({uploaded / naive_total:.1%} of naive); store on disk "
            f"{rows[-1]['store_bytes'] / 1e6:.1f} MB; last tree {rows[-1]['tree_bytes'] / 1e6:.1f}"
            f" MB"
        )
        print(f"recovered tree identical to the last deposit: {identical}")
        print(f"load average before {load_before}, after {load()}")
        if args.json:
            figures = {
                "machine": machine(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                "scale_mib": args.scale_mib,
                "seed": args.seed,
                "load_before": load_before,
                "load_after": load(),
                "deposits": rows,
                "total_uploaded_bytes": uploaded,
                "naive_total_bytes": naive_total,
                "recovered_identical": identical,
            }
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
