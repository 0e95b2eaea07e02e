"""Velador beside the tools a reporter would use instead: restic, borg, and `tar | age` (issue 14).

All four run one after another in one process, on one generated tree, with local-folder stores on
the same disk, so that they share the machine's state (page cache, load) as closely as a shared
machine allows. The tree (issue 14, "Where we stand"): 3/4 random "media" in one file, 1/4
compressible text in about 2,000 CSV files, 40 folders; 1 GiB, or 64 MiB with --quick.

For each tool, each timed command being the whole command, start-up included:

  * cold deposit / backup into an empty repository
  * unchanged re-deposit / backup of the same tree
  * recover / restore into an empty folder (checked byte-identical with `diff -r`)
  * bytes stored (the repository folder, every file counted)

Durable storage, to compare like with like (docs/benchmarks.md, "Peers"): Velador syncs its
store's file system (syncfs) before and after each batch of renames, restic 0.14 fsyncs every
file it writes into a local repository, borg 1.2 fsyncs its segment files and index on commit.
`tar | age` writes with no fsync at all, so its command is followed by `sync -f` on the output's
file system, timed with it. Restores: none of the tools fsyncs what it restores.

Settings: restic with `--compression auto` (its default for a version 2 repository), borg with
`--compression lz4` and `repokey` encryption, stock `age` with an X25519 recipient. A tool that is
not installed is reported as missing (with its Debian package) and left out; Velador never is.

Run: .venv/bin/python bench/peers.py [--quick | --size-mib N] [--runs 2] [--dir D] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from deposit import CPU, flush, load, machine, recover_cmd, run, set_up, velador_cmd  # noqa: E402

PACKAGES = {"restic": "restic", "borg": "borgbackup", "age": "age"}
"""The Debian package of each peer's command."""

FOLDERS = 40
CSV_FILES = 2000
WORDS = [
    *("Sinaloa", "Sonora", "Chihuahua", "Jalisco", "Michoacán", "Guerrero", "Oaxaca", "Veracruz"),
    *("transferencia", "efectivo", "contrato", "obra", "licitación", "proveedor", "municipio"),
    *("pagado", "pendiente", "cancelado", "revisado", "auditoría", "factura", "nómina"),
]


def make_tree(root: Path, size_mib: int, seed: int = 14) -> dict[str, int]:
    """The issue's tree under `root`: one random media file (3/4), CSV text files (1/4)."""
    rng = random.Random(seed)  # benchmark data, not a secret
    media = root / "media"
    media.mkdir(parents=True)
    total = size_mib * 1024 * 1024
    with open(media / "entrevista.mp4", "wb") as fh:
        left = total * 3 // 4
        while left:
            n = min(left, 8 << 20)
            fh.write(os.urandom(n))
            left -= n
    text_total = total - total * 3 // 4
    files = CSV_FILES if size_mib >= 256 else max(40, CSV_FILES * size_mib // 256)
    per_file = text_total // files
    for f in range(files):
        folder = root / f"carpeta-{f % (FOLDERS - 1):02d}"
        folder.mkdir(exist_ok=True)
        rows = ["fecha,estado,concepto,monto,folio,estatus\n"]
        size = len(rows[0])
        while size < per_file:
            row = (
                f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},{rng.choice(WORDS)},"
                f"{rng.choice(WORDS)} {rng.choice(WORDS)},{rng.randint(100, 9_999_999) / 100:.2f},"
                f"F{rng.randint(0, 10**9):09d},{rng.choice(WORDS)}\n"
            )
            rows.append(row)
            size += len(row)
        (folder / f"gastos-{f:04d}.csv").write_text("".join(rows)[:per_file])
    return {"bytes": du_apparent(root), "files": files + 1, "folders": FOLDERS}


def du_apparent(path: Path) -> int:
    """Sum of the sizes of every file under `path` (what a store would have to hold)."""
    total = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, n)).st_size
    return total


def same_tree(a: Path, b: Path) -> bool:
    return subprocess.run(["diff", "-rq", str(a), str(b)], capture_output=True).returncode == 0


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, float]:
    """(seconds, peak RSS MiB, CPU seconds of the command and its children) of one whole
    command, after flushing dirty pages. CPU seconds hardly depend on the machine's load; wall
    seconds on a shared machine do."""
    flush(cwd)
    result = run(cmd, env)
    return result[0], result[1], CPU.pop(id(result), float("nan"))


class Tool:
    """One peer: make an empty repository, back up, back up again, restore; say what it stores."""

    name = ""
    command = ""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.n = 0

    def fresh(self) -> None:
        """An empty repository for a cold run."""
        self.n += 1

    def backup(self, src: Path) -> list[str]:
        raise NotImplementedError

    def restore(self, out: Path) -> list[str]:
        raise NotImplementedError

    def repo(self) -> Path:
        raise NotImplementedError

    def version(self) -> str:
        out = subprocess.run(
            [self.command, "--version"], capture_output=True, text=True, env=self.env
        )
        return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


class Velador(Tool):
    name, command = "velador", "velador"

    def __init__(self, work: Path, env: dict[str, str], src: Path, runs: int) -> None:
        super().__init__(work, env)
        self.cases = [f"peer{i}" for i in range(runs)]
        self.rep, _ = set_up(work, self.cases, env)

    def backup(self, src: Path) -> list[str]:
        return velador_cmd(self.rep, "deposit", self.cases[self.n - 1], str(src), "--json")

    def restore(self, out: Path) -> list[str]:
        return recover_cmd(self.work, self.cases[self.n - 1], out)

    def repo(self) -> Path:
        return self.work / f"store-{self.cases[self.n - 1]}"

    def version(self) -> str:
        from deposit import VELADOR

        out = subprocess.run([VELADOR, "--version"], capture_output=True, text=True, env=self.env)
        return out.stdout.strip() or "?"

    def restored(self, out: Path, src: Path) -> Path:
        return out / src.name


class Restic(Tool):
    name, command = "restic", "restic"

    def version(self) -> str:
        out = subprocess.run(["restic", "version"], capture_output=True, text=True)
        return out.stdout.strip() or "?"

    def fresh(self) -> None:
        super().fresh()
        subprocess.run(
            ["restic", "init", "--repo", str(self.repo())],
            env=self.env,
            check=True,
            capture_output=True,
        )

    def repo(self) -> Path:
        return self.work / f"restic-{self.n}"

    def backup(self, src: Path) -> list[str]:
        repo = str(self.repo())
        return ["restic", "--repo", repo, "backup", "--compression", "auto", "-q", str(src)]

    def restore(self, out: Path) -> list[str]:
        return ["restic", "--repo", str(self.repo()), "restore", "latest", "--target", str(out)]

    def restored(self, out: Path, src: Path) -> Path:
        return out / str(src).lstrip("/")


class Borg(Tool):
    name, command = "borg", "borg"

    def fresh(self) -> None:
        super().fresh()
        self.archive = 0
        subprocess.run(
            ["borg", "init", "--encryption", "repokey", str(self.repo())],
            env=self.env,
            check=True,
            capture_output=True,
        )

    def repo(self) -> Path:
        return self.work / f"borg-{self.n}"

    def backup(self, src: Path) -> list[str]:
        self.archive += 1
        return [
            "borg",
            "create",
            "--compression",
            "lz4",
            f"{self.repo()}::a{self.archive}",
            str(src),
        ]

    def restore(self, out: Path) -> list[str]:
        # borg extracts into the current folder: a shell sets it, as a person would `cd` first.
        script = 'mkdir -p "$0" && cd "$0" && borg extract "$1"'
        return ["sh", "-c", script, str(out), f"{self.repo()}::a1"]

    def restored(self, out: Path, src: Path) -> Path:
        return out / str(src).lstrip("/")


class TarAge(Tool):
    name, command = "tar | age", "age"

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        super().__init__(work, env)
        self.key = work / "age.key"
        subprocess.run(["age-keygen", "-o", str(self.key)], check=True, capture_output=True)
        self.pub = subprocess.run(
            ["age-keygen", "-y", str(self.key)], check=True, capture_output=True, text=True
        ).stdout.strip()

    def repo(self) -> Path:
        return self.work / f"tarage-{self.n}"

    def fresh(self) -> None:
        super().fresh()
        self.repo().mkdir()

    def backup(self, src: Path) -> list[str]:
        # Made durable as the others make theirs: age writes without fsync, so sync -f follows.
        script = 'tar -cf - -C "$0" "$1" | age -e -r "$2" -o "$3/tree.tar.age" && sync -f "$3"'
        return ["sh", "-c", script, str(src.parent), src.name, self.pub, str(self.repo())]

    def restore(self, out: Path) -> list[str]:
        script = 'mkdir -p "$0" && age -d -i "$1" "$2/tree.tar.age" | tar -xf - -C "$0"'
        return ["sh", "-c", script, str(out), str(self.key), str(self.repo())]

    def restored(self, out: Path, src: Path) -> Path:
        return out / src.name


def measure(tool: Tool, src: Path, runs: int, rerun: bool) -> dict[str, object]:
    """Best of `runs` for each timed command; the stored bytes of the last cold run."""
    cold, again, rest = [], [], []
    identical = True
    for _ in range(runs):
        tool.fresh()
        cold.append(timed(tool.backup(src), tool.env, tool.work))
        if rerun:
            again.append(timed(tool.backup(src), tool.env, tool.work))
        out = tool.work / "restored"
        rest.append(timed(tool.restore(out), tool.env, tool.work))
        identical = identical and same_tree(src, tool.restored(out, src))
        shutil.rmtree(out)
    stored = du_apparent(tool.repo())

    def best(xs: list[tuple[float, int, float]]) -> dict[str, float] | None:
        if not xs:
            return None
        return {
            "s": min(x[0] for x in xs),
            "rss_mib": max(x[1] for x in xs),
            "cpu_s": min(x[2] for x in xs),
        }

    return {
        "version": tool.version(),
        "cold": best(cold),
        "unchanged": best(again),
        "restore": best(rest),
        "stored_bytes": stored,
        "identical": identical,
    }


def table(figures: dict[str, dict[str, object]]) -> str:
    names = list(figures)
    lines = ["| | " + " | ".join(n.replace("|", "\\|") for n in names) + " |"]
    lines.append("|---|" + "---|" * len(names))

    def cell(f: dict[str, object], k: str) -> str:
        v = f.get(k)
        return f"{v['s']:.2f} s ({v['cpu_s']:.2f} CPU s)" if isinstance(v, dict) else "–"

    for label, k in (
        ("cold deposit / backup", "cold"),
        ("unchanged re-deposit", "unchanged"),
        ("recover / restore", "restore"),
    ):
        lines.append(f"| {label} | " + " | ".join(cell(figures[n], k) for n in names) + " |")
    lines.append(
        "| bytes stored | "
        + " | ".join(f"{int(figures[n]['stored_bytes']) / 1e6:,.0f} MB" for n in names)
        + " |"
    )
    lines.append(
        "| restored byte-identical | "
        + " | ".join("yes" if figures[n]["identical"] else "**NO**" for n in names)
        + " |"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=1024, help="tree size (default 1024)")
    ap.add_argument("--quick", action="store_true", help="a 64 MiB tree, one run")
    ap.add_argument("--runs", type=int, default=2, help="runs of each timed command (best kept)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp folder)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    ap.add_argument("--only", action="append", help="run only this tool (repeatable)")
    args = ap.parse_args()
    size = 64 if args.quick else args.size_mib
    runs = 1 if args.quick else args.runs
    root = Path(args.dir or tempfile.mkdtemp(prefix="velador-peers-"))
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VELADOR_PASSPHRASE="bench run passphrase", VELADOR_INSECURE_FAST_KDF="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    # This checkout's code, whichever checkout the venv was installed from (editable installs).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p)
    env.update(
        RESTIC_PASSWORD="bench run passphrase",  # a throwaway benchmark repository
        BORG_PASSPHRASE="bench run passphrase",
        BORG_BASE_DIR=str(root / "borg-home"),
        RESTIC_CACHE_DIR=str(root / "restic-cache"),
    )
    missing = {t: p for t, p in PACKAGES.items() if not shutil.which(t)}
    for t, p in missing.items():
        print(f"peers: {t} is not installed, left out (Debian package: apt-get install {p})")
    load_before = load()
    try:
        src = root / "expediente"
        tree = make_tree(src, size)
        for f in src.rglob("*"):  # a warm page cache for every tool
            if f.is_file():
                with open(f, "rb") as fh:
                    while fh.read(8 << 20):
                        pass
        tools: list[Tool] = [Velador(root / "velador", env, src, runs)]
        if "restic" not in missing:
            tools.append(Restic(root / "restic", env))
        if "borg" not in missing:
            tools.append(Borg(root / "borg", env))
        if "age" not in missing:
            (root / "tarage").mkdir()
            tools.append(TarAge(root / "tarage", env))
        figures: dict[str, dict[str, object]] = {}
        for tool in tools:
            if args.only and tool.name not in args.only:
                continue
            tool.work.mkdir(exist_ok=True)
            print(f"peers: {tool.name} ...", flush=True)
            figures[tool.name] = measure(tool, src, runs, rerun=not isinstance(tool, TarAge))
        print(
            f"\n# peers — {machine()['host']}, {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d %H:%M')}; tree {tree['bytes'] / 2**20:.0f} MiB "
            f"({tree['files']} files, {tree['folders']} folders); best of {runs}; "
            f"load {load_before} → {load()}\n"
        )
        print(table(figures))
        print()
        for n, f in figures.items():
            print(f"{n}: {f['version']}")
        if args.json:
            out = {
                "machine": machine(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                "tree": tree,
                "runs": runs,
                "load_before": load_before,
                "load_after": load(),
                "missing": missing,
                "tools": figures,
            }
            args.json.write_text(json.dumps(out, indent=2) + "\n")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
