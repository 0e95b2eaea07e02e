"""The benchmark report: run every benchmark, keep its figures as JSON, render docs/benchmarks.md.

    .venv/bin/python bench/report.py                 # everything (hours; see PLAN below)
    .venv/bin/python bench/report.py --quick         # small sizes and counts (minutes)
    .venv/bin/python bench/report.py --only sweep    # re-run one section (repeatable)
    .venv/bin/python bench/report.py --render-only   # re-render the page from saved JSON

Each benchmark runs as its own process (bench/deposit.py, bench/dedup.py, bench/node_load.py,
bench/peers.py and bench/slowlink_bench.py for issue 14)
with --json into the results folder (default docs/benchmarks/data/), beside a `<name>.run.json`
that this script writes: the exact command, machine, start time, wall time, load average before
and after, exit status, and `<name>.log` with what the benchmark printed. The page is rendered
from those files only (bench/report_render.py), so it can be re-rendered, and checked, without
re-running anything. A run that fails or exceeds its time limit is recorded as such and shown on
the page; the other runs go on. Running a section first removes that section's old results, so a
page never mixes two runs of one section.

Why processes and not imports: the benchmark scripts are being optimised by others, and each
starts nodes, workers and temp folders of its own; a process per run keeps their state and memory
apart, and its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from report_data import SECTIONS  # noqa: E402
from report_render import render  # noqa: E402

DEFAULT_RESULTS = REPO / "docs" / "benchmarks" / "data"
DEFAULT_OUT = REPO / "docs" / "benchmarks.md"

# The full plan. Runs of deposit.py keep the best of --runs (the machine may be shared); the two
# largest sizes run once, as each run there takes minutes and needs several GiB of disk.
FULL = {
    "sizes": [1, 16, 128, 512, 1024, 2048],
    "runs": {1: 2, 16: 2, 128: 2, 512: 2, 1024: 1, 2048: 1},
    "dedup_scale": 64,
    "concurrency": [1, 4, 16, 32, 64, 128],
    "hb_seconds": 10,
    "hb_cases": 200,
    "sweep": [1_000, 10_000, 100_000, 1_000_000],
}
QUICK = {
    "sizes": [1, 16, 64],
    "runs": {},  # 1 run each
    "dedup_scale": 8,
    "concurrency": [1, 8, 32],
    "hb_seconds": 3,
    "hb_cases": 20,
    "sweep": [1_000, 10_000],
}


@dataclass
class Job:
    section: str
    name: str
    script: str  # relative to the repository
    args: list[str]
    params: dict[str, object]
    timeout_s: float
    extra: dict[str, object] = field(default_factory=dict)


def plan(
    quick: bool,
    sections: list[str],
    sizes: list[int] | None = None,
    concurrency: list[int] | None = None,
    sweep_cases: list[int] | None = None,
) -> list[Job]:
    """The runs of each section, in the order they run. Time limits are generous on purpose:
    they only stop a run that hangs, they do not judge speed."""
    p = QUICK if quick else FULL
    jobs: list[Job] = []
    if "deposit" in sections:
        for s in sizes or p["sizes"]:
            runs = p["runs"].get(s, 1)
            jobs.append(
                Job(
                    "deposit",
                    f"deposit-{s:05d}mib",
                    "bench/deposit.py",
                    ["--size-mib", str(s), "--runs", str(runs)],
                    {"size_mib": s, "runs": runs},
                    900 + 6 * s * runs,
                )
            )
    if "dedup" in sections:
        sc = p["dedup_scale"]
        jobs.append(
            Job(
                "dedup",
                f"dedup-{sc:04d}mib",
                "bench/dedup.py",
                ["--scale-mib", str(sc), "--deposits", "10"],
                {"scale_mib": sc, "deposits": 10},
                900 + 60 * sc,
            )
        )
    if "heartbeats" in sections:
        for c in concurrency or p["concurrency"]:
            jobs.append(
                Job(
                    "heartbeats",
                    f"heartbeats-c{c:04d}",
                    "bench/node_load.py",
                    [
                        *("--only", "heartbeats", "--concurrency", str(c)),
                        *("--seconds", str(p["hb_seconds"]), "--cases", str(p["hb_cases"])),
                    ],
                    {"concurrency": c, "seconds": p["hb_seconds"], "cases": p["hb_cases"]},
                    1800,
                )
            )
    if "sweep" in sections:
        for n in sweep_cases or p["sweep"]:
            jobs.append(
                Job(
                    "sweep",
                    f"sweep-{n:08d}",
                    "bench/node_load.py",
                    ["--only", "sweep", "--sweep-cases", str(n)],
                    {"cases": n},
                    900 + n * 0.01,
                )
            )
    if "release" in sections:
        jobs.append(Job("release", "release", "bench/node_load.py", ["--only", "release"], {}, 900))
    if "peers" in sections:  # issue 14: restic, borg, tar | age on one tree, one after another
        args = ["--quick"] if quick else ["--size-mib", "1024", "--runs", "2"]
        jobs.append(Job("peers", "peers", "bench/peers.py", args, {"quick": quick}, 3600))
    if "slowlink" in sections:  # issue 14: S3 through a paced uplink, velador and restic
        args = ["--quick"] if quick else ["--size-mib", "64", "--rates", "4,1"]
        jobs.append(Job("slowlink", "slowlink", "bench/slowlink_bench.py", args, {}, 3600))
    return jobs


def rel(path: Path) -> str:
    """path relative to the repository when inside it (commands are run from there)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def python_cmd() -> str:
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(REPO)) if exe.is_absolute() else str(exe)
    except ValueError:
        return str(exe)


def stop_group(proc: subprocess.Popen) -> None:
    """End the run's whole process group (it may have started a node and workers): SIGINT
    first, so that the script's finally blocks stop its node and remove its temp folder."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(15)
            return
        except subprocess.TimeoutExpired:
            continue


def run_job(job: Job, results: Path, quick: bool, report_command: str) -> dict[str, object]:
    """Run one benchmark process; write its .run.json (and .log); return the .run.json."""
    from deposit import load, machine  # stable helpers of bench/deposit.py

    out_json = results / f"{job.name}.json"
    log_path = results / f"{job.name}.log"
    argv = [python_cmd(), job.script, *job.args, "--json", rel(out_json)]
    command = shlex.join(argv)
    print(f"\n=== {command}", flush=True)
    meta: dict[str, object] = {
        "section": job.section,
        "params": job.params,
        "command": command,
        "report_command": report_command,
        "quick": quick,
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "load_before": load(),
        "timeout_s": round(job.timeout_s),
        "timed_out": False,
    }
    t = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(job.timeout_s)
        except subprocess.TimeoutExpired:
            meta["timed_out"] = True
            stop_group(proc)
        except KeyboardInterrupt:
            stop_group(proc)
            raise
    meta["seconds"] = time.perf_counter() - t
    meta["load_after"] = load()
    meta["returncode"] = proc.returncode
    (results / f"{job.name}.run.json").write_text(json.dumps(meta, indent=2) + "\n")
    tail = log_path.read_text(errors="replace").strip().splitlines()[-6:]
    print("\n".join(tail))
    status = "timed out" if meta["timed_out"] else f"exit {proc.returncode}"
    print(f"=== {job.name}: {status}, {meta['seconds']:.0f} s", flush=True)
    return meta


def clear_section(results: Path, section: str) -> None:
    for pattern in (f"{section}-*", f"{section}.*"):
        for p in results.glob(pattern):
            p.unlink()


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes and counts (minutes)")
    ap.add_argument("--only", action="append", choices=SECTIONS, help="run only this section")
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON results folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown page to write")
    ap.add_argument("--render-only", action="store_true", help="re-render from --results")
    ap.add_argument("--sizes", type=ints, help="deposit file sizes in MiB, e.g. 1,16")
    ap.add_argument("--concurrency", type=ints, help="heartbeat clients, e.g. 1,32")
    ap.add_argument("--sweep-cases", type=ints, help="sweep case counts, e.g. 1000,100000")
    args = ap.parse_args()
    command = shlex.join(["bench/report.py", *sys.argv[1:]])
    results: Path = args.results
    results.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        sections = args.only or list(SECTIONS)
        if {"deposit", "dedup"} & set(sections) and not shutil.which("age"):
            raise SystemExit(
                "the stock 'age' binary is needed for the baselines: apt-get install age"
            )
        jobs = plan(args.quick, sections, args.sizes, args.concurrency, args.sweep_cases)
        start = time.perf_counter()
        for section in sections:
            clear_section(results, section)
            for job in (j for j in jobs if j.section == section):
                run_job(job, results, args.quick, command)
            render(results, args.out, rel(results))  # a partial page after each section
        print(f"\nall runs: {(time.perf_counter() - start) / 60:.1f} min")
    out = render(results, args.out, rel(results))
    print(f"wrote {rel(out)} and its plots in {rel(out.parent / out.stem)}/")


if __name__ == "__main__":
    main()
