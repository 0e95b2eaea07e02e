"""bench/report_render.py: the benchmark page from saved JSON, with verdicts computed from it.

No benchmark runs here: the tests write the files that bench/report.py would have saved (one set
of figures that meets every issue target, one that misses them) and render the page from them.
They check the table rows, that each verdict follows the numbers (both ways), that a failed or
timed-out run is shown as such, and that keys a script may add or drop do not break the page:
all without matplotlib, so `make test` checks them. The last test writes the whole page with its
plots as `make bench` does, and needs matplotlib (the `bench` extra): skipped without it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report_render  # noqa: E402
from report_data import load_results  # noqa: E402

MACHINE = {
    "host": "testbox",
    "cores": 2,
    "cpu": "Test CPU 9000",
    "python": "3.11.7",
    "date": "2026-11-23 12:00",
}
MIB = 1024 * 1024


def put(results: Path, name: str, section: str, params: dict, figures: dict | None, **meta):
    """Write what bench/report.py saves for one run: <name>.run.json, <name>.json, <name>.log."""
    run = {
        "section": section,
        "params": params,
        "command": f".venv/bin/python bench/x.py --json {name}.json",
        "report_command": "bench/report.py --test",
        "quick": False,
        "machine": MACHINE,
        "started": "2026-11-23 12:00",
        "load_before": "0.10, 0.20, 0.30",
        "load_after": "0.40, 0.50, 0.60",
        "timeout_s": 900,
        "timed_out": False,
        "seconds": 12.0,
        "returncode": 0,
        **meta,
    }
    (results / f"{name}.run.json").write_text(json.dumps(run))
    if figures is not None:
        (results / f"{name}.json").write_text(json.dumps(figures))
    (results / f"{name}.log").write_text("benchmark output\nlast line of the log\n")


def deposit_figures(
    size_mib: int, dep_s: float, age_s: float, sync: bool = True, tmpfs: bool = False
) -> dict:
    f = {
        "machine": MACHINE,
        "size_mb": size_mib * MIB / 1e6,
        "runs": 2,
        "deposit": {"s": dep_s, "rss_mib": 70, "cpu_s": 0.5},
        "age_e": {"s": age_s, "rss_mib": 5, "cpu_s": 0.1},
        "recover": {"s": dep_s * 2, "rss_mib": 60, "cpu_s": 0.6, "identical": True},
        "age_d": {"s": age_s, "rss_mib": 9, "cpu_s": 0.1},
        "redeposit": {"command_s": 0.4, "work_s": 0.002, "bytes_uploaded": 0, "unchanged": True},
        "edit": {"new_chunks": 1, "bytes_uploaded": 1_500_000},
        "cold": {"chunks": 13, "bytes_uploaded": size_mib * MIB},
        "future_row": {"s": 0.01},  # a key a script may add later: ignored, not an error
    }
    if tmpfs:
        f["tmpfs"] = {
            "deposit": {"s": dep_s / 2, "rss_mib": 60, "cpu_s": 0.4},
            "age_e": {"s": age_s, "rss_mib": 5, "cpu_s": 0.1},
            "recover": {"s": dep_s, "rss_mib": 50, "cpu_s": 0.5},
            "age_d": {"s": age_s, "rss_mib": 9, "cpu_s": 0.1},
        }
    if sync:
        f["age_e_sync"] = {"s": age_s * 1.5}
    return f


def dedup_figures() -> dict:
    rows = [
        {
            "deposit": k,
            "changes": ["edited"],
            "files": 10 + k,
            "tree_bytes": 8_000_000 + k * 1_000_000,
            "bytes_uploaded": 8_000_000 if k == 1 else 2_500_000,
            "new_chunks": 17 if k == 1 else 7,
            "known_chunks": 0,
            "store_bytes": 8_000_000 + (k - 1) * 2_500_000,
            "deposit_s": 1.0,
            "naive_bytes": 8_000_000 + k * 1_000_000,
            "naive_cumulative_bytes": sum(8_000_000 + i * 1_000_000 for i in range(1, k + 1)),
            "naive_s": 0.05,
        }
        for k in (1, 2, 3)
    ]
    return {
        "machine": MACHINE,
        "deposits": rows,
        "total_uploaded_bytes": 13_000_000,
        "naive_total_bytes": 30_000_000,
        "recovered_identical": True,
    }


def hb(c: int, per_s: float, p99: float) -> dict:
    return {
        "heartbeats": {
            "concurrency": c,
            "cases": 200,
            "seconds": 10.0,
            "accepted": int(per_s * 10),
            "errors": 0,
            "per_s": per_s,
            "p50_ms": p99 / 3,
            "p99_ms": p99,
            "max_ms": p99 * 1.2,
            "node_cpu_us_per_hb": 900.0,
            "generator_cpu_s": 5.0,
        }
    }


def write_world(results: Path, fast: bool) -> None:
    """Figures that meet every issue target (fast) or miss every one (not fast)."""
    results.mkdir(parents=True)
    if fast:
        put(results, "deposit-00016mib", "deposit", {"size_mib": 16, "runs": 2},
            deposit_figures(16, 0.1, 0.2, tmpfs=True))  # fmt: skip
        put(results, "heartbeats-c0004", "heartbeats", {"concurrency": 4}, hb(4, 400, 20))
        put(results, "heartbeats-c0032", "heartbeats", {"concurrency": 32}, hb(32, 1500, 50))
        sweep = {"cases": 100_000, "none_due_ms": 0.3, "due": 1000, "due_ms": 400.0, "setup_s": 7.0}
        release = {"fetchable_ms": [30.0, 40.0], "webhook_ms": [25.0, 35.0], "missed": 0}
    else:
        put(results, "deposit-00016mib", "deposit", {"size_mib": 16, "runs": 2},
            deposit_figures(16, 1.0, 0.1, sync=False))  # fmt: skip
        put(results, "heartbeats-c0032", "heartbeats", {"concurrency": 32}, hb(32, 180, 62))
        # the rate is met here but not the p99: both must hold at the same concurrency
        put(results, "heartbeats-c0128", "heartbeats", {"concurrency": 128}, hb(128, 1200, 250))
        sweep = {"cases": 100_000, "none_due_ms": 0.3, "due": 1000, "due_ms": 4460.0}
        release = {"fetchable_ms": [30.0, 2500.0], "webhook_ms": [25.0, 35.0], "missed": 0}
        put(results, "sweep-01000000", "sweep", {"cases": 1_000_000}, None,
            timed_out=True, returncode=-9, timeout_s=10900)  # fmt: skip
    put(results, "deposit-00001mib", "deposit", {"size_mib": 1, "runs": 2},
        deposit_figures(1, 0.05, 0.1 if fast else 0.01))  # fmt: skip
    put(results, "dedup-0008mib", "dedup", {"scale_mib": 8}, dedup_figures())
    put(results, "sweep-00001000", "sweep", {"cases": 1000},
        {"sweep": {"cases": 1000, "none_due_ms": 0.2, "due": 10, "due_ms": 20.0}})  # fmt: skip
    put(results, "sweep-00100000", "sweep", {"cases": 100_000}, {"sweep": sweep})
    put(results, "release", "release", {}, {"release": release})


def page(tmp_path: Path, fast: bool) -> str:
    """The markdown from the saved files, without plots (no matplotlib needed)."""
    results = tmp_path / "data"
    write_world(results, fast)
    return report_render.render_markdown(
        report_render.Page(load_results(results)), "docs/benchmarks/data"
    )


def target(md: str, name: str) -> str:
    """The row of the issue-targets table whose first cell starts with name."""
    rows = [line for line in md.splitlines() if line.startswith(f"| {name}")]
    assert len(rows) == 1, rows
    return rows[0]


def test_page_meets_targets(tmp_path):
    md = page(tmp_path, fast=True)
    assert target(md, "≥ 1,000 heartbeats/s").endswith(
        "| best: 1,500/s, p99 50.0 ms at 32 clients | met |"
    )
    assert target(md, "sweep of 100,000 cases").endswith(
        "| none due 0.3 ms; 1,000 due 400.0 ms | met |"
    )
    assert target(md, "release < 2 s").endswith(
        "| worst of 2 releases 40 ms; 0 missed (not within 10 s) | met |"
    )
    assert target(md, "deposit as fast as `age -e` (README").endswith("| met |")
    # the deposit table: 16 MiB = 16.8 MB in 0.1 s (168 MB/s) vs age -e in 0.2 s (84 MB/s)
    assert "| 16 | 2 | 0.10 | 168 | 84 | 56 | 2.00 | 0.20 | 84 | 84 | 1.00 | yes |" in md
    # heartbeat rows, each with its own verdict
    assert "| 32 | 200 | 10 | 1,500 | 16.7 | 50.0 | 60.0 | 0 | 900 | 50 | met |" in md
    assert "| 4 | 200 | 10 | 400 | 6.7 | 20.0 | 24.0 | 0 | 900 | 50 | **NOT met** |" in md
    # dedup: per deposit, and the total as a share of the naive bytes
    assert "| 2 | 12 | 10.0 | 2.5 | 7 | 10.5 | 10.0 | 19.0 | 1.00 | 0.05 | edited |" in md
    assert "velador sent 43.3% of the naive bytes" in md
    # the tmpfs round, where the script ran one: 16.8 MB in 0.05 s; 0.4 CPU s for 0.0168 GB
    assert "| 16 | 336 | 84 | 4.00 | 168 | 84 | 2.00 | 23.84 | 5.96 | 29.80 | 5.96 |" in md
    assert "| 100,000 | 0.3 | 1,000 | 400 | yes | 7 | 12 |" in md
    assert "| 1 | 30 | 25 |" in md  # release 1: fetchable 30 ms, webhook 25 ms
    # every figure names the machine and the commands
    assert md.count("*Machine*: testbox, 2 cores, Test CPU 9000, Python 3.11.7") == 6
    assert ".venv/bin/python bench/x.py --json sweep-00100000.json" in md
    assert "Made by `bench/report.py --test`." in md
    assert "**NOT met**" not in target(md, "≥ 1,000")


def test_page_misses_targets(tmp_path):
    md = page(tmp_path, fast=False)
    assert target(md, "≥ 1,000 heartbeats/s").endswith(
        "| highest rate: 1,200/s, p99 250.0 ms at 128 clients | **NOT met** |"
    )
    assert target(md, "sweep of 100,000 cases").endswith(
        "| none due 0.3 ms; 1,000 due 4,460.0 ms | **NOT met** |"
    )
    assert target(md, "release < 2 s").endswith(
        "| worst of 2 releases 2,500 ms; 0 missed (not within 10 s) | **NOT met** |"
    )
    assert target(md, "deposit as fast as `age -e` (README").endswith(
        "| speed ratio velador/age 0.10 (at 16 MiB) to 0.20 over 2 sizes; slower at 1 MiB, "
        "16 MiB | **NOT met** |"
    )
    assert "The same on tmpfs" not in md  # no run here has a tmpfs round
    # age -e + sync -f is missing from one run's figures: a dash there, not a crash
    assert "| 16 | 2 | 1.00 | 17 | 168 | – | 0.10 |" in md
    # the run that timed out is on the page, with its row and its log
    assert "| 1,000,000 | – | – | – | – | – | 12 | 0.10 → 0.40 | timed out after 10900 s |" in md
    assert "*Run `sweep-01000000`*: timed out after 10900 s — `benchmark output / last line" in md


def test_sweep_not_measured_at_target_size(tmp_path):
    """A quick run without 100k cases says so instead of claiming either verdict."""
    results = tmp_path / "data"
    results.mkdir()
    put(results, "sweep-00010000", "sweep", {"cases": 10_000},
        {"sweep": {"cases": 10_000, "none_due_ms": 0.2, "due": 100, "due_ms": 90.0}},
        quick=True)  # fmt: skip
    md = report_render.render_markdown(report_render.Page(load_results(results)), "data")
    assert target(md, "sweep of 100,000 cases").endswith(
        "| – | not measured at 100,000 cases (largest run: 10,000) |"
    )
    assert "**Quick run**" in md
    assert "## Deposit and recover throughput vs file size\n\nNot run." in md


@pytest.mark.parametrize("fast", [True, False])
def test_render_writes_page_and_plots(tmp_path, fast):
    """What `make bench` writes: the page, and beside it a PNG per figure it links to."""
    pytest.importorskip("matplotlib")  # the `bench` extra; `make test` does not install it
    results = tmp_path / "data"
    write_world(results, fast)
    out = tmp_path / "site" / "benchmarks.md"
    out.parent.mkdir()
    report_render.render(results, out, "docs/benchmarks/data")
    md = out.read_text()
    # the same page as without matplotlib, plus one image line per figure
    assert re.sub(r"!\[[^\]]*\]\([^)]*\)\n\n", "", md) == page(tmp_path / "again", fast)
    assert target(md, "sweep of 100,000 cases").endswith("| met |" if fast else "| **NOT met** |")
    for name in ("throughput", "memory", "dedup", "heartbeats", "sweep", "release"):
        png = out.parent / "benchmarks" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"](benchmarks/{name}.png)" in md


def test_render_removes_plots_of_sections_without_results(tmp_path):
    """A stale plot from an earlier run is not left beside a page that no longer has its data."""
    pytest.importorskip("matplotlib")
    results = tmp_path / "data"
    results.mkdir()
    put(results, "release", "release", {},
        {"release": {"fetchable_ms": [30.0], "webhook_ms": [25.0], "missed": 0}})  # fmt: skip
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "throughput.png").write_bytes(b"stale")
    report_render.render(results, tmp_path / "benchmarks.md")
    assert not (tmp_path / "benchmarks" / "throughput.png").exists()
    assert (tmp_path / "benchmarks" / "release.png").exists()
