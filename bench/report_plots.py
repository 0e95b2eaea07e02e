"""The PNG plots of docs/benchmarks.md (matplotlib, Agg backend: no display needed).

Each plot carries the machine in its caption, so a figure copied out of the page still says
where it was measured. A section without figures gets no plot (the page then says "Not run").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter
from report_data import (
    HB_P99_MS,
    HB_RATE,
    RELEASE_MS,
    SWEEP_CASES,
    SWEEP_MS,
    Result,
    get,
    machines_line,
    num,
    release_values,
    throughput,
)
from report_peers import plot_peers

PLAIN = FuncFormatter(lambda x, _: f"{x:g}")


def _caption(fig: plt.Figure, rs: list[Result]) -> None:
    quick = " — QUICK RUN" if any(r.meta.get("quick") for r in rs) else ""
    fig.text(0.01, 0.01, machines_line(rs) + quick, fontsize=7, color="0.35")


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


Series = list[tuple[str, str, str, str]]
"""(figure key, legend label, colour, line style) of each line of a plot against file size."""


def _plot_vs_size(
    ok: list[Result],
    series: Series,
    value: Callable[[Result, str], float | None],
    ylabel: str,
    title: str,
    path: Path,
) -> Path:
    """One line per series against file size (log scale), skipping runs without that figure."""
    sizes = [r.params.get("size_mib") or num(r.figures, "size_mb") for r in ok]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for key, label, color, style in series:
        pts = [(s, v) for s, r in zip(sizes, ok, strict=True) if (v := value(r, key)) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, marker="o", color=color, label=label)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(PLAIN)
    ax.set_xlabel("file size (MiB, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    _caption(fig, ok)
    return _save(fig, path)


def plot_throughput(rs: list[Result], path: Path) -> Path | None:
    ok = [r for r in rs if r.ok]
    if not ok:
        return None
    series = [
        ("deposit", "velador deposit", "C0", "-"),
        ("age_e", "age -e", "C1", "--"),
        ("age_e_sync", "age -e + sync -f", "C1", ":"),
        ("recover", "velador recover", "C2", "-"),
        ("age_d", "age -d", "C3", "--"),
    ]
    tp = {id(r): throughput(r) for r in ok}
    return _plot_vs_size(
        ok,
        series,
        lambda r, key: tp[id(r)][key],
        "MB/s (higher is better)",
        "Deposit and recover throughput vs stock age, same file",
        path,
    )


def plot_memory(rs: list[Result], path: Path) -> Path | None:
    ok = [r for r in rs if r.ok]
    if not ok:
        return None
    series = [
        ("deposit", "velador deposit (process tree)", "C0", "-"),
        ("recover", "velador recover (process tree)", "C2", "-"),
        ("age_e", "age -e", "C1", "--"),
        ("age_d", "age -d", "C3", "--"),
    ]
    return _plot_vs_size(
        ok,
        series,
        lambda r, key: num(r.figures, key, "rss_mib"),
        "peak RSS (MiB; flat is the goal)",
        "Peak memory vs file size",
        path,
    )


def plot_dedup(rs: list[Result], path: Path) -> Path | None:
    ok = [r for r in rs if r.ok and get(r.figures, "deposits")]
    if not ok:
        return None
    rows = ok[-1].figures["deposits"]
    k = [d["deposit"] for d in rows]
    mb = lambda key: [(num(d, key) or 0) / 1e6 for d in rows]  # noqa: E731
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6))
    w = 0.4
    a1.bar([x - w / 2 for x in k], mb("bytes_uploaded"), w, label="velador uploaded", color="C0")
    a1.bar([x + w / 2 for x in k], mb("naive_bytes"), w, label="naive tar | age -e", color="C1")
    a1.set_xlabel("deposit")
    a1.set_ylabel("MB uploaded by this deposit")
    a1.set_xticks(k)
    a1.set_title("Uploaded per deposit")
    a1.legend()
    a1.grid(True, axis="y", alpha=0.3)
    a2.plot(k, mb("store_bytes"), "-o", color="C0", label="velador store (cumulative)")
    a2.plot(k, mb("naive_cumulative_bytes"), "--o", color="C1", label="naive (cumulative)")
    a2.plot(k, mb("tree_bytes"), ":", color="0.4", label="tree size")
    a2.set_xlabel("deposit")
    a2.set_ylabel("MB")
    a2.set_xticks(k)
    a2.set_ylim(bottom=0)
    a2.set_title("Cumulative")
    a2.legend()
    a2.grid(True, alpha=0.3)
    _caption(fig, ok)
    return _save(fig, path)


def plot_heartbeats(rs: list[Result], path: Path) -> Path | None:
    hb = [get(r.figures, "heartbeats") for r in rs if r.ok]
    hb = [h for h in hb if h and num(h, "concurrency") is not None]
    if not hb:
        return None
    c = [num(h, "concurrency") for h in hb]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6))
    a1.plot(c, [num(h, "per_s") for h in hb], "-o", color="C0", label="accepted heartbeats/s")
    a1.axhline(HB_RATE, color="C3", ls="--", label=f"target {HB_RATE:,.0f}/s")
    a1.set_ylabel("heartbeats/s")
    a1.set_ylim(bottom=0)
    a1.set_title("Throughput")
    a2.plot(c, [num(h, "p50_ms") for h in hb], "-o", color="C0", label="p50")
    a2.plot(c, [num(h, "p99_ms") for h in hb], "-o", color="C1", label="p99")
    a2.axhline(HB_P99_MS, color="C3", ls="--", label=f"target p99 < {HB_P99_MS:.0f} ms")
    a2.set_yscale("log")
    a2.yaxis.set_major_formatter(PLAIN)
    a2.set_ylabel("latency ms (log scale)")
    a2.set_title("Latency")
    for a in (a1, a2):
        a.set_xscale("log", base=2)
        a.xaxis.set_major_formatter(PLAIN)
        a.set_xlabel("concurrent clients (log scale)")
        a.grid(True, alpha=0.3)
        a.legend()
    _caption(fig, [r for r in rs if r.ok])
    return _save(fig, path)


def plot_sweep(rs: list[Result], path: Path) -> Path | None:
    sw = [get(r.figures, "sweep") for r in rs if r.ok]
    sw = [s for s in sw if s and num(s, "cases")]
    if not sw:
        return None
    n = [num(s, "cases") for s in sw]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(n, [num(s, "none_due_ms") for s in sw], "-o", color="C0", label="none due")
    ax.plot(n, [num(s, "due_ms") for s in sw], "-o", color="C1", label="1% due (reminders)")
    ax.axhline(SWEEP_MS, color="C3", ls="--", label=f"target < {SWEEP_MS:,.0f} ms")
    ax.axvline(SWEEP_CASES, color="0.6", ls=":", label=f"target size {SWEEP_CASES:,} cases")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cases in the node (log scale)")
    ax.set_ylabel("sweep ms (log scale)")
    ax.set_title("Sweep time vs number of cases")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend()
    _caption(fig, [r for r in rs if r.ok])
    return _save(fig, path)


def plot_release(rs: list[Result], path: Path) -> Path | None:
    fetch, hook = [], []
    for r in rs:
        if r.ok:
            f, h, _ = release_values(r.figures)
            fetch += f
            hook += h
    if not fetch and not hook:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.4))
    ax.plot(range(1, len(fetch) + 1), fetch, "o", color="C0", label="envelopes fetchable")
    ax.plot(range(1, len(hook) + 1), hook, "s", color="C1", label="webhook delivered")
    ax.axhline(RELEASE_MS, color="C3", ls="--", label=f"target < {RELEASE_MS:,.0f} ms")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PLAIN)
    ax.set_xticks(range(1, max(len(fetch), len(hook)) + 1))
    ax.set_xlabel("release")
    ax.set_ylabel("ms after the due time (log scale)")
    ax.set_title("Release latency")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend()
    _caption(fig, [r for r in rs if r.ok])
    return _save(fig, path)


def write_plots(results: dict[str, list[Result]], img_dir: Path) -> dict[str, Path]:
    """Write every plot that has data into img_dir; returns plot name -> file. Plots of a
    section without data are removed, so the page never shows a stale image."""
    jobs = {
        "throughput": (plot_throughput, results["deposit"]),
        "memory": (plot_memory, results["deposit"]),
        "dedup": (plot_dedup, results["dedup"]),
        "heartbeats": (plot_heartbeats, results["heartbeats"]),
        "sweep": (plot_sweep, results["sweep"]),
        "release": (plot_release, results["release"]),
        "peers": (plot_peers, results["peers"]),
    }
    written = {}
    for name, (fn, rs) in jobs.items():
        path = img_dir / f"{name}.png"
        got = fn(rs, path)
        if got is None:
            path.unlink(missing_ok=True)
        else:
            written[name] = got
    return written
