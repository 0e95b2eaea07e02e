"""docs/benchmarks.md from the JSON files that bench/report.py saved; runs no benchmark.

Kept apart from the runner so that the page can be re-rendered from saved results (and tested
from fixture files) without a benchmark or a node. Every verdict on an issue target is computed
here from the numbers in the results, never written by hand: a re-run that misses a target says
so. Figures written by the benchmark scripts are read with .get(): a key a script adds is
ignored, a key it drops shows as a dash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTIONS = ("deposit", "dedup", "heartbeats", "sweep", "release")

HB_RATE = 1000.0
"""Issue target: sustained verified heartbeats per second on the test machine..."""
HB_P99_MS = 100.0
"""...with a 99th-percentile latency under this."""
SWEEP_CASES = 100_000
"""Issue target: a sweep over this many cases..."""
SWEEP_MS = 1000.0
"""...takes less than this, with none due and with 1% due."""
RELEASE_MS = 2000.0
"""Issue target: envelopes fetchable and the webhook delivered this soon after the due time."""

DASH = "–"


@dataclass
class Result:
    """One benchmark run: what report.py recorded about it, and the figures it wrote."""

    name: str
    section: str
    params: dict[str, Any]
    meta: dict[str, Any]
    figures: dict[str, Any] | None = None
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.figures is not None and self.meta.get("returncode") == 0

    @property
    def status(self) -> str:
        if self.meta.get("timed_out"):
            return f"timed out after {self.meta.get('timeout_s', '?')} s"
        if self.meta.get("returncode") not in (0, None):
            return f"failed (exit {self.meta['returncode']})"
        if self.figures is None:
            return "no figures written"
        return "ok"


@dataclass
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured, or the issue sets no number
    note: str = ""

    @property
    def word(self) -> str:
        if self.met is None:
            return self.note or "not measured"
        return "met" if self.met else "**NOT met**"


@dataclass
class Page:
    results: dict[str, list[Result]]
    images: dict[str, str] = field(default_factory=dict)  # plot name -> path relative to the page


# --- reading -----------------------------------------------------------------------------------


def load_results(results_dir: Path) -> dict[str, list[Result]]:
    """Every `<name>.run.json` in results_dir with its figures, by section, in plot order."""
    by: dict[str, list[Result]] = {s: [] for s in SECTIONS}
    for meta_path in sorted(results_dir.glob("*.run.json")):
        meta = json.loads(meta_path.read_text())
        section = meta.get("section")
        if section not in by:
            continue
        name = meta_path.name.removesuffix(".run.json")
        fig_path = results_dir / f"{name}.json"
        figures = None
        if fig_path.exists():
            try:
                figures = json.loads(fig_path.read_text())
            except json.JSONDecodeError:
                figures = None
        log_path = results_dir / f"{name}.log"
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        by[section].append(Result(name, section, meta.get("params", {}), meta, figures, log))
    for rs in by.values():
        rs.sort(key=_order)
    return by


def _order(r: Result) -> tuple[float, str]:
    p = r.params
    for k in ("size_mib", "concurrency", "cases", "scale_mib"):
        if isinstance(p.get(k), (int, float)):
            return float(p[k]), r.name
    return 0.0, r.name


def get(d: Any, *keys: str) -> Any:
    """d[k1][k2]..., or None where any level is missing."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def num(d: Any, *keys: str) -> float | None:
    v = get(d, *keys)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fmt(x: float | None, nd: int = 1) -> str:
    return DASH if x is None else f"{x:,.{nd}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def load1(s: str | None) -> str:
    """The 1-minute figure of a 'x, y, z' load average string."""
    return s.split(",")[0].strip() if s else DASH


def load_cell(r: Result) -> str:
    return f"{load1(r.meta.get('load_before'))} → {load1(r.meta.get('load_after'))}"


# --- derived figures and verdicts ---------------------------------------------------------------


def throughput(r: Result) -> dict[str, float | None]:
    """MB/s (10^6 bytes) of each operation of one deposit benchmark run."""
    f = r.figures or {}
    mb = num(f, "size_mb")
    return {
        k: ratio(mb, num(f, k, "s"))
        for k in ("deposit", "age_e", "age_e_sync", "recover", "age_d", "age_e_tmpfs")
    }


def deposit_verdicts(rs: list[Result]) -> list[Verdict]:
    """Deposit as fast as age -e (the README's performance target), plain and made durable."""
    ok = [r for r in rs if r.ok]
    out = []
    for base, label in (("age_e", "`age -e`"), ("age_e_sync", "`age -e` + `sync -f`")):
        ratios = [
            (
                r.params.get("size_mib"),
                ratio(num(r.figures, base, "s"), num(r.figures, "deposit", "s")),
            )
            for r in ok
        ]
        ratios = [(s, x) for s, x in ratios if x is not None]
        if not ratios:
            out.append(Verdict(f"deposit as fast as {label}", DASH, None))
            continue
        worst = min(ratios, key=lambda t: t[1])
        slow = [f"{s} MiB" for s, x in ratios if x < 1.0]
        out.append(
            Verdict(
                f"deposit as fast as {label} (README target)",
                f"speed ratio velador/age {min(x for _, x in ratios):.2f} (at {worst[0]} MiB) "
                f"to {max(x for _, x in ratios):.2f} over {len(ratios)} size"
                + ("s" if len(ratios) > 1 else "")
                + (f"; slower at {', '.join(slow)}" if slow else ""),
                not slow,
            )
        )
    return out


def memory_verdict(rs: list[Result]) -> Verdict:
    ok = [r for r in rs if r.ok and num(r.figures, "deposit", "rss_mib") is not None]
    if len(ok) < 2:
        return Verdict("peak memory flat vs file size", DASH, None, "not measured")
    lo, hi = ok[0], ok[-1]
    parts = []
    for op in ("deposit", "recover"):
        a, b = num(lo.figures, op, "rss_mib"), num(hi.figures, op, "rss_mib")
        parts.append(
            f"{op} {fmt(a, 0)} MiB at {lo.params.get('size_mib')} MiB → {fmt(b, 0)} MiB at "
            f"{hi.params.get('size_mib')} MiB"
        )
    return Verdict(
        "peak memory flat vs file size (issue: 'flat is the goal')",
        "; ".join(parts),
        None,
        "no number set; see the plot",
    )


def hb_met(f: dict[str, Any] | None) -> bool | None:
    rate, p99 = num(f, "per_s"), num(f, "p99_ms")
    if rate is None or p99 is None:
        return None
    return rate >= HB_RATE and p99 < HB_P99_MS


def heartbeat_verdict(rs: list[Result]) -> Verdict:
    """Met if some concurrency level sustains the rate with the p99 under the bound."""
    rows = [(r, r.figures["heartbeats"]) for r in rs if r.ok and "heartbeats" in r.figures]
    target = f"≥ {HB_RATE:,.0f} heartbeats/s with p99 < {HB_P99_MS:.0f} ms"
    if not rows:
        return Verdict(target, DASH, None)
    meeting = [(r, h) for r, h in rows if hb_met(h)]
    pool = meeting or rows
    _, h = max(pool, key=lambda t: num(t[1], "per_s") or 0.0)
    measured = (
        f"{'best' if meeting else 'highest rate'}: {fmt(num(h, 'per_s'), 0)}/s, "
        f"p99 {fmt(num(h, 'p99_ms'))} ms at {h.get('concurrency', DASH)} clients"
    )
    return Verdict(target, measured, bool(meeting))


def sweep_ok(f: dict[str, Any] | None) -> bool | None:
    a, b = num(f, "none_due_ms"), num(f, "due_ms")
    if a is None or b is None:
        return None
    return a < SWEEP_MS and b < SWEEP_MS


def sweep_verdict(rs: list[Result]) -> Verdict:
    target = f"sweep of {SWEEP_CASES:,} cases < {SWEEP_MS / 1000:.0f} s"
    rows = [r.figures["sweep"] for r in rs if r.ok and "sweep" in r.figures]
    at = [s for s in rows if num(s, "cases") == SWEEP_CASES]
    if not at:
        largest = max((num(s, "cases") or 0 for s in rows), default=0)
        note = f"not measured at {SWEEP_CASES:,} cases" + (
            f" (largest run: {largest:,.0f})" if largest else ""
        )
        return Verdict(target, DASH, None, note)
    s = at[-1]
    measured = (
        f"none due {fmt(num(s, 'none_due_ms'))} ms; {fmt(num(s, 'due'), 0)} due "
        f"{fmt(num(s, 'due_ms'))} ms"
    )
    return Verdict(target, measured, sweep_ok(s))


def release_values(f: dict[str, Any] | None) -> tuple[list[float], list[float], int]:
    rel = get(f, "release") or {}
    fetch = [float(x) for x in rel.get("fetchable_ms", []) if isinstance(x, (int, float))]
    hook = [float(x) for x in rel.get("webhook_ms", []) if isinstance(x, (int, float))]
    missed = rel.get("missed", 0)
    return fetch, hook, int(missed) if isinstance(missed, int) else 0


def release_verdict(rs: list[Result]) -> Verdict:
    target = f"release < {RELEASE_MS / 1000:.0f} s after due (fetchable and webhook)"
    runs = [release_values(r.figures) for r in rs if r.ok and "release" in r.figures]
    values = [x for fe, ho, _ in runs for x in fe + ho]
    missed = sum(m for _, _, m in runs)
    if not values and not missed:
        return Verdict(target, DASH, None)
    n = sum(len(fe) for fe, _, _ in runs)
    worst = max(values) if values else None
    measured = f"worst of {n} releases {fmt(worst, 0)} ms; {missed} missed (not within 10 s)"
    return Verdict(target, measured, bool(values) and missed == 0 and worst < RELEASE_MS)


def verdicts(results: dict[str, list[Result]]) -> list[Verdict]:
    return [
        heartbeat_verdict(results["heartbeats"]),
        sweep_verdict(results["sweep"]),
        release_verdict(results["release"]),
        *deposit_verdicts(results["deposit"]),
        memory_verdict(results["deposit"]),
    ]


# --- markdown ----------------------------------------------------------------------------------

HEADER = """\
# Velador benchmarks

<!-- Generated by bench/report.py from the JSON in {data}/.
     Edit bench/report_render.py, not this page. -->

How to reproduce: `make bench` runs every benchmark below on this machine and rewrites this
page, its plots in `docs/benchmarks/` and the raw figures in `{data}/` (it installs the `bench`
extra, matplotlib, into `.venv` if needed). `make bench QUICK=1` does the same with small sizes
and counts in a few minutes, to check that everything works; its figures are not ones to quote.
`.venv/bin/python bench/report.py --only SECTION` re-runs one section ({sections});
`.venv/bin/python bench/report.py --render-only` re-renders this page from the saved JSON without
running anything. The baselines need the stock `age` binary (`apt-get install age`). Every
figure below names the machine, the exact commands (run from the repository root) and the
baseline measured beside it; the verdicts on the issue targets are computed from the numbers,
never written by hand.
"""


def machines_line(rs: Iterable[Result]) -> str:
    seen = []
    for r in rs:
        m = r.meta.get("machine") or get(r.figures, "machine") or {}
        desc = (
            f"{m.get('host', '?')}, {m.get('cores', '?')} cores, {m.get('cpu') or 'CPU unknown'}, "
            f"Python {m.get('python', '?')}"
        )
        if desc not in seen:
            seen.append(desc)
    return "; ".join(seen) if seen else DASH


def when_line(rs: list[Result]) -> str:
    starts = sorted(r.meta.get("started", "") for r in rs if r.meta.get("started"))
    if not starts:
        return DASH
    return starts[0] if starts[0] == starts[-1] else f"{starts[0]} to {starts[-1]}"


def about(rs: list[Result], baseline: str, extra: str = "") -> list[str]:
    """The machine, baseline and commands block under each figure."""
    quick = any(r.meta.get("quick") for r in rs)
    lines = [
        f"*Machine*: {machines_line(rs)}; runs started {when_line(rs)}; load average (1 min) "
        "before → after each run is in the table."
        + (" **Quick run: small sizes, not figures to quote.**" if quick else ""),
        "",
        f"*Baseline beside it*: {baseline}",
        "",
    ]
    if extra:
        lines += [extra, ""]
    failed = [r for r in rs if not r.ok]
    for r in failed:
        tail = " / ".join(line for line in r.log.strip().splitlines()[-3:])
        lines.append(f"*Run `{r.name}`*: {r.status}" + (f" — `{tail[:300]}`" if tail else ""))
        lines.append("")
    lines += ["*Commands*:", "", "```sh"]
    lines += [r.meta.get("command", DASH) for r in rs]
    lines += ["```", ""]
    return lines


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def image(page: Page, key: str, alt: str) -> list[str]:
    return [f"![{alt}]({page.images[key]})", ""] if key in page.images else []


def section_deposit(page: Page) -> list[str]:
    rs = page.results["deposit"]
    lines = ["## Deposit and recover throughput vs file size", ""]
    if not rs:
        return [*lines, "Not run.", ""]
    lines += image(page, "throughput", "MB/s of deposit, recover and age vs file size")
    rows = []
    for r in rs:
        f, t = r.figures or {}, throughput(r)
        rows.append(
            [
                str(r.params.get("size_mib", DASH)),
                str(get(f, "runs") or r.params.get("runs") or DASH),
                fmt(num(f, "deposit", "s"), 2),
                fmt(t["deposit"], 0),
                fmt(t["age_e"], 0),
                fmt(t["age_e_sync"], 0),
                fmt(ratio(num(f, "age_e", "s"), num(f, "deposit", "s")), 2),
                fmt(num(f, "recover", "s"), 2),
                fmt(t["recover"], 0),
                fmt(t["age_d"], 0),
                fmt(ratio(num(f, "age_d", "s"), num(f, "recover", "s")), 2),
                {True: "yes", False: "**NO**"}.get(get(f, "recover", "identical"), DASH),
                load_cell(r),
                r.status,
            ]
        )
    lines += table(
        [
            "file MiB",
            "runs (best kept)",
            "deposit s",
            "deposit MB/s",
            "age -e MB/s",
            "age -e + sync MB/s",
            "deposit/age -e speed",
            "recover s",
            "recover MB/s",
            "age -d MB/s",
            "recover/age -d speed",
            "byte-identical",
            "load",
            "status",
        ],
        rows,
    )
    extra_rows = []
    for r in rs:
        f = r.figures or {}
        extra_rows.append(
            [
                str(r.params.get("size_mib", DASH)),
                fmt(num(f, "deposit", "cpu_s"), 2),
                fmt(num(f, "age_e", "cpu_s"), 2),
                fmt(num(f, "recover", "cpu_s"), 2),
                fmt(num(f, "age_d", "cpu_s"), 2),
                fmt(num(f, "redeposit", "command_s"), 2),
                fmt(ratio(num(f, "redeposit", "work_s"), 1e-3), 1),
                fmt(num(f, "redeposit", "bytes_uploaded"), 0),
                fmt(num(f, "edit", "new_chunks"), 0),
                fmt(ratio(num(f, "edit", "bytes_uploaded"), 1e6), 2),
            ]
        )
    lines += [
        "CPU seconds (user + system, workers included), an unchanged re-deposit (the whole "
        "command, and the deposit() call alone) and a 1-byte edit in the middle of a 100 MiB "
        "file:",
        "",
        *table(
            [
                "file MiB",
                "deposit CPU s",
                "age -e CPU s",
                "recover CPU s",
                "age -d CPU s",
                "re-deposit command s",
                "re-deposit deposit() ms",
                "re-deposit bytes up",
                "1-byte edit: new chunks",
                "1-byte edit: MB up",
            ],
            extra_rows,
        ),
    ]
    lines += about(
        rs,
        "the stock `age -e` / `age -d` (X25519 recipient) on the same file, warm page cache; "
        "`age -e` followed by `sync -f`, since a deposit makes its objects durable and plain "
        "`age` does not. Store: file:// on the same disk. A speed ratio above 1 means velador is "
        "faster.",
    )
    return lines


def section_memory(page: Page) -> list[str]:
    rs = page.results["deposit"]
    lines = ["## Peak memory vs file size", ""]
    if not rs:
        return [*lines, "Not run.", ""]
    lines += image(page, "memory", "peak RSS of deposit, recover and age vs file size")
    rows = [
        [
            str(r.params.get("size_mib", DASH)),
            fmt(num(r.figures, "deposit", "rss_mib"), 0),
            fmt(num(r.figures, "age_e", "rss_mib"), 0),
            fmt(num(r.figures, "recover", "rss_mib"), 0),
            fmt(num(r.figures, "age_d", "rss_mib"), 0),
        ]
        for r in rs
    ]
    lines += table(
        [
            "file MiB",
            "deposit peak RSS MiB",
            "age -e peak RSS MiB",
            "recover peak RSS MiB",
            "age -d peak RSS MiB",
        ],
        rows,
    )
    lines += about(
        rs,
        "peak RSS of `age -e` and `age -d` on the same file. Velador's figure is the whole "
        "process tree (main process and workers, summed), sampled every 20 ms. Flat is the goal.",
    )
    return lines


def section_dedup(page: Page) -> list[str]:
    rs = page.results["dedup"]
    lines = ["## Dedup on an evolving investigation", ""]
    if not rs:
        return [*lines, "Not run.", ""]
    lines += image(page, "dedup", "bytes uploaded per deposit and cumulative, vs naive")
    for r in rs:
        f = r.figures or {}
        rows = []
        for d in get(f, "deposits") or []:
            rows.append(
                [
                    str(d.get("deposit", DASH)),
                    fmt(num(d, "files"), 0),
                    fmt(ratio(num(d, "tree_bytes"), 1e6)),
                    fmt(ratio(num(d, "bytes_uploaded"), 1e6)),
                    fmt(num(d, "new_chunks"), 0),
                    fmt(ratio(num(d, "store_bytes"), 1e6)),
                    fmt(ratio(num(d, "naive_bytes"), 1e6)),
                    fmt(ratio(num(d, "naive_cumulative_bytes"), 1e6)),
                    fmt(num(d, "deposit_s"), 2),
                    fmt(num(d, "naive_s"), 2),
                    "; ".join(d.get("changes", [])),
                ]
            )
        lines += table(
            [
                "deposit",
                "files",
                "tree MB",
                "velador uploaded MB",
                "new chunks",
                "velador store MB (cumulative)",
                "naive tar + age MB",
                "naive cumulative MB",
                "deposit s",
                "naive s",
                "changes since the previous deposit",
            ],
            rows,
        )
        up, naive = num(f, "total_uploaded_bytes"), num(f, "naive_total_bytes")
        ident = get(f, "recovered_identical")
        lines += [
            f"Total uploaded over {len(rows)} deposits: velador {fmt(ratio(up, 1e6))} MB, naive "
            f"re-encryption {fmt(ratio(naive, 1e6))} MB: velador sent "
            f"{fmt(None if ratio(up, naive) is None else 100 * ratio(up, naive))}% of the naive "
            f"bytes. Recovered tree identical to the last deposit: "
            f"{ {True: 'yes', False: '**NO**'}.get(ident, DASH) }. Load {load_cell(r)}; "
            f"status {r.status}.",
            "",
        ]
    lines += about(
        rs,
        "the naive approach, `tar -cf - TREE | age -e -r KEY` of the whole tree at every "
        "deposit (uploads the full tree each time). Random bytes throughout, so neither side "
        "gains from compression: the saving is deduplication (content-defined chunks, about "
        "1 MiB on average, 256 KiB at least, so an edited small document is uploaded whole).",
    )
    return lines


def section_heartbeats(page: Page) -> list[str]:
    rs = page.results["heartbeats"]
    lines = ["## Node heartbeats vs concurrent clients", ""]
    if not rs:
        return [*lines, "Not run.", ""]
    lines += image(page, "heartbeats", "heartbeats per second and latency vs concurrent clients")
    rows = []
    for r in rs:
        h = get(r.figures, "heartbeats") or {}
        secs, gen = num(h, "seconds"), num(h, "generator_cpu_s")
        met = hb_met(h) if r.ok else None
        rows.append(
            [
                fmt(num(h, "concurrency"), 0) if h else str(r.params.get("concurrency", DASH)),
                fmt(num(h, "cases"), 0),
                fmt(secs, 0),
                fmt(num(h, "per_s"), 0),
                fmt(num(h, "p50_ms")),
                fmt(num(h, "p99_ms")),
                fmt(num(h, "max_ms")),
                fmt(num(h, "errors"), 0),
                fmt(num(h, "node_cpu_us_per_hb"), 0),
                fmt(None if ratio(gen, secs) is None else 100 * ratio(gen, secs), 0),
                {True: "met", False: "**NOT met**"}.get(met, DASH),
                load_cell(r),
                r.status,
            ]
        )
    lines += table(
        [
            "clients",
            "cases",
            "s",
            "heartbeats/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "node CPU µs/heartbeat",
            "generator CPU % of one core",
            f"≥ {HB_RATE:,.0f}/s and p99 < {HB_P99_MS:.0f} ms",
            "load",
            "status",
        ],
        rows,
    )
    cores = {str(get(r.meta, "machine", "cores") or get(r.figures, "machine", "cores")) for r in rs}
    lines += about(
        rs,
        f"the issue target, ≥ {HB_RATE:,.0f} verified heartbeats/s with p99 < {HB_P99_MS:.0f} "
        "ms. One real `velador node serve` process; every heartbeat is verified, persisted "
        "(synchronous=FULL) and answered with a signed receipt. Heartbeats are pre-signed before "
        "the timed phase.",
        f"Note: the load generator runs on the same machine and shares its {'/'.join(cores)} "
        "cores with the node (its CPU use is in the table), so the node has less than the whole "
        "machine.",
    )
    return lines


def section_sweep(page: Page) -> list[str]:
    rs = page.results["sweep"]
    lines = ["## Sweep time vs number of cases", ""]
    if not rs:
        return [*lines, "Not run.", ""]
    lines += image(page, "sweep", "sweep time vs number of cases")
    rows = []
    for r in rs:
        s = get(r.figures, "sweep") or {}
        ok = sweep_ok(s) if r.ok else None
        rows.append(
            [
                fmt(num(s, "cases"), 0) if s else f"{r.params.get('cases', DASH):,}",
                fmt(num(s, "none_due_ms"), 1),
                fmt(num(s, "due"), 0),
                fmt(num(s, "due_ms"), 0),
                {True: "yes", False: "no"}.get(ok, DASH),
                fmt(num(r.meta, "seconds"), 0),
                load_cell(r),
                r.status,
            ]
        )
    lines += table(
        [
            "cases",
            "sweep, none due ms",
            "due (1%)",
            "sweep, 1% due ms",
            "both < 1 s",
            "whole run s (set-up included)",
            "load",
            "status",
        ],
        rows,
    )
    lines += about(
        rs,
        f"the issue target, a sweep of {SWEEP_CASES:,} cases in < {SWEEP_MS / 1000:.0f} s "
        "(checked with none due and with 1% due, whose reminder notices are written). Cases are "
        "rows cloned from one real registration, each with its own reporter-signed policy.",
    )
    return lines


def section_release(page: Page) -> list[str]:
    rs = page.results["release"]
    lines = ["## Release latency", ""]
    if not rs:
        return [*lines, "Not run.", ""]
    lines += image(page, "release", "release latency of each release")
    rows = []
    for r in rs:
        fetch, hook, missed = release_values(r.figures)
        for i, (a, b) in enumerate(zip(fetch, hook, strict=False), 1):
            rows.append([str(i), fmt(a, 0), fmt(b, 0), load_cell(r), r.status])
        if missed:
            rows.append([f"{missed} missed", DASH, DASH, load_cell(r), r.status])
        if not r.ok:
            rows.append([DASH, DASH, DASH, load_cell(r), r.status])
    lines += table(
        [
            "release",
            "envelopes fetchable ms after due",
            "webhook delivered ms after due",
            "load",
            "status",
        ],
        rows,
    )
    lines += about(
        rs,
        f"the issue target, < {RELEASE_MS / 1000:.0f} s from the due second to the envelopes "
        "being fetchable by a recipient and the release webhook arriving. Cases with every=2 s, "
        "grace=0 on a real node and the real clock; the node's periodic sweep is set to 30 s so "
        "the exact-time job is what is measured.",
    )
    return lines


def run_times(results: dict[str, list[Result]]) -> list[str]:
    rows = []
    total = 0.0
    for s in SECTIONS:
        secs = [num(r.meta, "seconds") or 0.0 for r in results[s]]
        if secs:
            total += sum(secs)
            rows.append([s, str(len(secs)), fmt(sum(secs) / 60, 1)])
    if not rows:
        return []
    rows.append(["total", str(sum(len(v) for v in results.values())), fmt(total / 60, 1)])
    return [
        "Wall time of the runs behind this page:",
        "",
        *table(["section", "runs", "minutes"], rows),
    ]


def render_markdown(page: Page, data_rel: str, command: str = "") -> str:
    """The whole page, from page.results and the plots already written to page.images."""
    all_rs = [r for s in SECTIONS for r in page.results[s]]
    lines = [HEADER.format(data=data_rel, sections=", ".join(SECTIONS)).rstrip(), ""]
    if not all_rs:
        lines += ["No results yet: run `make bench`.", ""]
        return "\n".join(lines)
    quick = any(r.meta.get("quick") for r in all_rs)
    if quick:
        lines += [
            "> **Quick run** (`make bench QUICK=1`): small sizes and counts, to check that the "
            "benchmarks work. Not figures to quote.",
            "",
        ]
    lines += [
        f"Machine: {machines_line(all_rs)}. Runs started {when_line(all_rs)}."
        + (f" Report command: `{command}`." if command else ""),
        "",
        "## Issue targets",
        "",
        *table(
            ["target", "measured", "verdict"],
            [[v.target, v.measured, v.word] for v in verdicts(page.results)],
        ),
    ]
    for part in (
        section_deposit,
        section_memory,
        section_dedup,
        section_heartbeats,
        section_sweep,
        section_release,
    ):
        lines += part(page)
    lines += run_times(page.results)
    return "\n".join(lines).rstrip() + "\n"


def render(results_dir: Path, out: Path, command: str = "", data_label: str = "") -> Path:
    """Write `out` (markdown) and its plots into the folder named after it (docs/benchmarks.md
    -> docs/benchmarks/) from the results in results_dir. data_label names results_dir on the
    page (default: its path)."""
    from report_plots import write_plots  # matplotlib is needed here only

    results = load_results(results_dir)
    img_dir = out.parent / out.stem
    img_dir.mkdir(parents=True, exist_ok=True)
    written = write_plots(results, img_dir)
    page = Page(results, {k: os.path.relpath(p, out.parent) for k, p in written.items()})
    out.write_text(render_markdown(page, data_label or str(results_dir), command))
    return out
