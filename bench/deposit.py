"""Deposit and recovery throughput and memory, beside the stock `age` on the same file.

Prints figures; asserts nothing (issue 2 targets are read off the output):
  * deposit / recover MB/s of `velador` vs `age -e` / `age -d` on the same file, as ratios; also
    vs `age -e` followed by `sync -f`, since a deposit makes its objects durable and age does not
  * peak RSS of the whole velador process tree (main + workers, summed, sampled every 20 ms)
  * re-deposit of the unchanged tree: time as % of the cold deposit, bytes uploaded; the whole
    command, and the deposit() call alone (apart from Python start-up and the passphrase KDF)
  * a 1-byte edit in the middle of a 100 MiB file: new chunks uploaded
  * the same deposit / recover / age comparison with everything on tmpfs (/dev/shm: the source,
    the store, the home, age's output), where neither side waits on a disk: a CPU-bound
    comparison, printed as its own rows, with CPU seconds per GB (skipped with --no-tmpfs or
    when the tmpfs has less than 4x the file size free)

Every timed command runs --runs times (default 2) after `sync -f`, and the best is kept: the
machine may be shared. The load average is printed before and after.

Commands run with their bytecode cached (PYTHONPYCACHEPREFIX under the bench folder, and
PYTHONDONTWRITEBYTECODE dropped), as from an installed package: a development shell that forbids
bytecode would otherwise make every command compile Velador's modules from source again (about
45 ms here), which is no cost of Velador's.

Run: .venv/bin/python bench/deposit.py [--size-mib 1024] [--dir /tmp/velador-bench] [--runs 2]
     [--tmpfs /dev/shm | --no-tmpfs] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
VELADOR = str(BIN / "velador")


def tree_rss_kib(pid: int) -> int:
    """Sum of VmRSS over `pid` and all its descendants."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


PASSPHRASE = "bench run passphrase"
"""Of the throwaway identities the benchmark makes (the commands get it from the environment)."""

CPU: dict[int, float] = {}
"""CPU seconds (user + system, the process and the workers it waited for) of each run, by id."""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run `cmd`; return (seconds, peak tree RSS in MiB, stdout); its CPU time goes to CPU."""
    peak = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kib(proc.pid))
            done.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{err.decode()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = (elapsed, peak // 1024, out.decode())
    CPU[id(result)] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def make_file(path: Path, mib: int) -> None:
    """Fresh random bytes throughout, so nothing deduplicates inside the file."""
    with open(path, "wb") as fh:
        for i in range(0, mib, 8):
            fh.write(os.urandom(min(8, mib - i) * 1024 * 1024))


def flush(path: Path) -> None:
    """Write out dirty pages before a timed run, so that no run pays for the previous one."""
    subprocess.run(["sync", "-f", str(path)], check=True)


def machine() -> dict[str, object]:
    """What a reader needs to compare figures: host, cores, CPU model, Python, date."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def best(runs: list[tuple[float, int, str]]) -> tuple[float, int, str, float]:
    """The faster of the runs (the machine is shared), with the higher of their peak RSS, and
    the least CPU time of them (CPU seconds hardly depend on the load, wall time does)."""
    fastest = min(runs, key=lambda r: r[0])
    cpu = min(CPU.get(id(r), float("nan")) for r in runs)
    return fastest[0], max(r[1] for r in runs), fastest[2], cpu


def velador_cmd(home: Path, *args: str) -> list[str]:
    return [VELADOR, "--home", str(home), *args]


def set_up(root: Path, cases: list[str], env: dict[str, str]) -> tuple[Path, Path]:
    """A reporter and an outlet under `root`, and one case per name, its store and shares there
    too. Each case has its own chunk key, so nothing deduplicates across cases."""
    rep, outlet = root / "rep", root / "o1"
    run(velador_cmd(rep, "id", "new", "--name", "Bench Reporter"), env)
    run(velador_cmd(outlet, "id", "new", "--name", "Bench Outlet", "--role", "outlet"), env)
    card = run(velador_cmd(outlet, "id", "card"), env)[2].strip()
    run(velador_cmd(rep, "contact", "add", card, "--alias", "o1"), env)
    for c in cases:
        store = f"file://{root / f'store-{c}'}"
        run(
            velador_cmd(
                rep,
                *("case", "create", c, "--recipient", "o1", "--threshold", "2", "--shares", "3"),
                *("--offline-dir", str(root / f"usb-{c}"), "--store", store),
            ),
            env,
        )
    return rep, outlet


def recover_cmd(root: Path, case: str, out: Path) -> list[str]:
    return velador_cmd(
        root / "o1", "recover", "--shares", str(root / f"usb-{case}"), "--out", str(out), "--json"
    )


def tmpfs_round(
    base: Path, src_file: Path, runs: int, env: dict[str, str]
) -> dict[str, dict[str, float]]:
    """Deposit, recover, `age -e` and `age -d` with every file on the tmpfs `base`: nothing
    waits on a disk (syncfs and fsync of tmpfs return at once), so this compares the work done
    per byte, CPU against CPU. Best of `runs` for time, least CPU of them."""
    root = Path(tempfile.mkdtemp(prefix="velador-bench-", dir=base))
    try:
        big = root / "src" / "big.bin"
        big.parent.mkdir()
        shutil.copyfile(src_file, big)
        cases = [f"t{i}" for i in range(runs)]
        set_up(root, cases, env)
        key = root / "age.key"
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        pub = subprocess.run(
            ["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True
        ).stdout.strip()
        enc = ["age", "-e", "-r", pub, "-o", str(root / "big.age"), str(big)]
        dec = ["age", "-d", "-i", str(key), "-o", str(root / "big.dec"), str(root / "big.age")]
        age_e, age_d, deps, recs = [], [], [], []
        for c in cases:
            age_e.append(run(enc, env))
            age_d.append(run(dec, env))
            os.unlink(root / "big.dec")
            os.unlink(root / "big.age")
            deps.append(run(velador_cmd(root / "rep", "deposit", c, str(big.parent)), env))
            recs.append(run(recover_cmd(root, c, root / "out"), env))
            if subprocess.run(["cmp", str(big), str(root / "out" / "src" / "big.bin")]).returncode:
                raise SystemExit("tmpfs round: the recovered file differs")
            shutil.rmtree(root / "out")
            shutil.rmtree(root / f"store-{c}")  # one store at a time on the tmpfs
        figures = {}
        for name, rs in (("deposit", deps), ("age_e", age_e), ("recover", recs), ("age_d", age_d)):
            t, rss, _, cpu = best(rs)
            figures[name] = {"s": t, "rss_mib": rss, "cpu_s": cpu}
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def in_process_redeposit(home: Path, case: str, src: Path) -> tuple[float, float, dict]:
    """(unlock s, deposit() s, result) of an unchanged re-deposit, inside this process."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vault.clock import SystemClock
    from vault.deposit import deposit
    from vault.identity import unlock_identity
    from vault.state import LocalState

    t0 = time.perf_counter()
    state = LocalState(home)
    ident = unlock_identity(home, PASSPHRASE)
    rec = state.case(case)
    t1 = time.perf_counter()
    res = deposit(state, ident, rec, [src], SystemClock())
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, res.to_json()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=2, help="runs of each timed command (best kept)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    ap.add_argument(
        "--tmpfs",
        type=Path,
        default=Path("/dev/shm"),
        help="tmpfs folder for the CPU-bound round (default /dev/shm)",
    )
    ap.add_argument("--no-tmpfs", action="store_true", help="skip the CPU-bound tmpfs round")
    args = ap.parse_args()
    if not shutil.which("age"):
        raise SystemExit("the stock 'age' binary is needed for the baseline (apt-get install age)")
    root = Path(args.dir or tempfile.mkdtemp(prefix="velador-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VELADOR_PASSPHRASE=PASSPHRASE, VELADOR_INSECURE_FAST_KDF="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    # This checkout's code, whichever checkout the venv was installed from (editable installs):
    # without it the commands ran the code of the checkout the venv points to.
    here = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    load_before = load()
    try:
        big = root / "src" / "big.bin"
        big.parent.mkdir(parents=True, exist_ok=True)
        make_file(big, args.size_mib)
        subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)
        size_mb = big.stat().st_size / 1e6

        out = root / "out"
        v = velador_cmd
        # One case per cold run: each has its own chunk key, so nothing deduplicates across runs.
        cases = [f"bench{i}" for i in range(args.runs)]
        rep, _ = set_up(root, cases, env)

        # --- baseline: stock age on the same file ------------------------------------------------
        subprocess.run(["age-keygen", "-o", str(root / "age.key")], check=True, capture_output=True)
        pub = subprocess.run(
            ["age-keygen", "-y", str(root / "age.key")], check=True, capture_output=True, text=True
        ).stdout.strip()
        age_e, age_es, age_d = [], [], []
        enc = ["age", "-e", "-r", pub, "-o", str(root / "big.age"), str(big)]
        dec = ["age", "-d", "-i", str(root / "age.key"), "-o", str(root / "big.dec")]
        for _ in range(args.runs):
            flush(root)
            age_e.append(run(enc, env))
            flush(root)
            # the same, made durable as velador makes its objects (one syncfs at the end)
            age_es.append(run(["sh", "-c", '"$@" && sync -f "$0"', str(root), *enc], env))
            flush(root)
            age_d.append(run([*dec, str(root / "big.age")], env))
            os.unlink(root / "big.dec")
        os.unlink(root / "big.age")
        t_age_e, rss_age_e, _, c_age_e = best(age_e)
        t_age_es, _, _, _ = best(age_es)
        t_age_d, rss_age_d, _, c_age_d = best(age_d)

        # --- velador ------------------------------------------------------------------------------
        deps = []
        for c in cases:
            flush(root)
            deps.append(run(v(rep, "deposit", c, str(big.parent), "--json"), env))
        t_dep, rss_dep, js, c_dep = best(deps)
        dep = json.loads(js)
        res = []
        for _ in range(args.runs):
            flush(root)
            res.append(run(v(rep, "deposit", cases[0], str(big.parent), "--json"), env))
        t_re, _, js2, _ = best(res)
        re = json.loads(js2)
        inproc = [in_process_redeposit(rep, cases[0], big.parent) for _ in range(args.runs)]
        t_unlock, t_work, re_in = min(inproc, key=lambda r: r[1])
        t_py = best(
            [run([sys.executable, "-c", "import cli.main"], env) for _ in range(args.runs)]
        )[0]
        recs = []
        for _ in range(args.runs):
            flush(root)
            recs.append(run(recover_cmd(root, cases[0], out), env))
            same = subprocess.run(["cmp", str(big), str(out / "src" / "big.bin")]).returncode == 0
            shutil.rmtree(out)
        t_rec, rss_rec, _, c_rec = best(recs)

        # --- 1-byte edit in the middle of a 100 MiB file ---------------------------------------
        edit_dir = root / "edit"
        edit_dir.mkdir()
        f100 = edit_dir / "doc.bin"
        make_file(f100, 100)
        run(v(rep, "deposit", cases[0], str(edit_dir), "--json"), env)
        with open(f100, "r+b") as fh:
            fh.seek(50 * 1024 * 1024)
            b = fh.read(1)
            fh.seek(50 * 1024 * 1024)
            fh.write(bytes([b[0] ^ 0xFF]))
        edit = json.loads(run(v(rep, "deposit", cases[0], str(edit_dir), "--json"), env)[2])

        # --- the same on tmpfs: CPU against CPU ------------------------------------------------
        tmpfs: dict[str, dict[str, float]] | None = None
        tmpfs_note = ""
        if args.no_tmpfs:
            tmpfs_note = "skipped (--no-tmpfs)"
        elif not args.tmpfs.is_dir():
            tmpfs_note = f"skipped ({args.tmpfs} does not exist)"
        elif shutil.disk_usage(args.tmpfs).free < 4 * big.stat().st_size:
            tmpfs_note = f"skipped ({args.tmpfs} has less than 4x the file size free)"
        else:
            tmpfs = tmpfs_round(args.tmpfs, big, args.runs, env)

        print(
            f"# velador deposit/recover benchmark — {platform.node()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}"
        )
        print(
            f"file: {size_mb:.0f} MB of random data, warm page cache; store: file:// on the same "
            f"disk; best of {args.runs} runs each; load average before {load_before}, "
            f"after {load()}"
        )
        print()
        print(
            "| operation | velador s | velador MB/s | age s | age MB/s | ratio (velador/age speed) "
            "| velador peak RSS MiB | age peak RSS MiB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print(
            f"| encrypt (deposit vs age -e) | {t_dep:.2f} | {size_mb / t_dep:.0f} | {t_age_e:.2f} "
            f"| {size_mb / t_age_e:.0f} | {t_age_e / t_dep:.2f} | {rss_dep} | {rss_age_e} |"
        )
        print(
            f"| encrypt, durable (deposit vs age -e; sync -f) | {t_dep:.2f} "
            f"| {size_mb / t_dep:.0f} | {t_age_es:.2f} | {size_mb / t_age_es:.0f} "
            f"| {t_age_es / t_dep:.2f} | {rss_dep} | {rss_age_e} |"
        )
        print(
            f"| decrypt (recover vs age -d) | {t_rec:.2f} | {size_mb / t_rec:.0f} | {t_age_d:.2f} "
            f"| {size_mb / t_age_d:.0f} | {t_age_d / t_rec:.2f} | {rss_rec} | {rss_age_d} |"
        )
        if tmpfs is not None:
            for label, mine, theirs in (
                ("encrypt, tmpfs (deposit vs age -e)", "deposit", "age_e"),
                ("decrypt, tmpfs (recover vs age -d)", "recover", "age_d"),
            ):
                m, a = tmpfs[mine], tmpfs[theirs]
                print(
                    f"| {label} | {m['s']:.2f} | {size_mb / m['s']:.0f} | {a['s']:.2f} "
                    f"| {size_mb / a['s']:.0f} | {a['s'] / m['s']:.2f} | {m['rss_mib']} "
                    f"| {a['rss_mib']} |"
                )
            gb = size_mb / 1000
            cpu = {k: f["cpu_s"] / gb for k, f in tmpfs.items()}
            print()
            print(
                f"tmpfs ({args.tmpfs}: source, store, home and age's output in memory, no disk "
                f"wait), CPU seconds per GB: deposit {cpu['deposit']:.2f} vs age -e "
                f"{cpu['age_e']:.2f} ({cpu['deposit'] / cpu['age_e']:.1f}x); recover "
                f"{cpu['recover']:.2f} vs age -d {cpu['age_d']:.2f} "
                f"({cpu['recover'] / cpu['age_d']:.1f}x)"
            )
        else:
            print()
            print(f"tmpfs round: {tmpfs_note}")
        print()
        print(
            f"CPU seconds (user + system, workers included): deposit {c_dep:.2f} vs age -e "
            f"{c_age_e:.2f}; recover {c_rec:.2f} vs age -d {c_age_d:.2f}"
        )
        print(f"recovered file byte-identical: {same}")
        print(
            f"cold deposit: {dep['new_chunks']} chunks, "
            f"{dep['bytes_uploaded'] / 1e6:.0f} MB uploaded"
        )
        print(
            f"re-deposit unchanged, whole command: {t_re:.3f} s = {100 * t_re / t_dep:.2f}% of "
            f"cold, {re['bytes_uploaded']} bytes uploaded, unchanged={re['unchanged']}"
        )
        print(
            f"re-deposit unchanged, in process: deposit() {t_work * 1000:.1f} ms = "
            f"{100 * t_work / t_dep:.2f}% of cold, {re_in['bytes_uploaded']} bytes uploaded; "
            f"state + unlock (test KDF) {t_unlock * 1000:.0f} ms; "
            f"Python start-up + imports of the CLI {t_py * 1000:.0f} ms"
        )
        print(
            f"1-byte edit in 100 MiB: {edit['new_chunks']} new chunk(s), "
            f"{edit['bytes_uploaded'] / 1e6:.2f} MB uploaded (incl. snapshot)"
        )
        if args.json:
            figures = {
                "machine": machine(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                "size_mb": size_mb,
                "runs": args.runs,
                "load_before": load_before,
                "load_after": load(),
                "deposit": {"s": t_dep, "rss_mib": rss_dep, "cpu_s": c_dep},
                "age_e": {"s": t_age_e, "rss_mib": rss_age_e, "cpu_s": c_age_e},
                "age_e_sync": {"s": t_age_es},
                "recover": {"s": t_rec, "rss_mib": rss_rec, "cpu_s": c_rec, "identical": same},
                "age_d": {"s": t_age_d, "rss_mib": rss_age_d, "cpu_s": c_age_d},
                "redeposit": {
                    "command_s": t_re,
                    "work_s": t_work,
                    "bytes_uploaded": re["bytes_uploaded"],
                    "unchanged": re["unchanged"],
                },
                "edit": {
                    "new_chunks": edit["new_chunks"],
                    "bytes_uploaded": edit["bytes_uploaded"],
                },
                "cold": {"chunks": dep["new_chunks"], "bytes_uploaded": dep["bytes_uploaded"]},
                "tmpfs": tmpfs if tmpfs is not None else {"skipped": tmpfs_note},
            }
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
