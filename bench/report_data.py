"""The saved benchmark results, read back, and the issue targets judged from them.

bench/report.py saves each run as `<name>.run.json` (what it ran, where, how it ended) beside the
benchmark's own `<name>.json`. This module reads them and computes every verdict on an issue
target from the numbers, never by hand: a re-run that misses a target says so. Figures written
by the benchmark scripts are read with get()/num(): a key a script adds is ignored, a key it
drops shows as a dash, so the scripts can evolve without breaking the page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECTIONS = ("deposit", "dedup", "heartbeats", "sweep", "release", "peers", "slowlink")

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
        k: ratio(mb, num(f, k, "s")) for k in ("deposit", "age_e", "age_e_sync", "recover", "age_d")
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
    from report_peers import (  # issue 14's targets (imports this module)
        peers_verdicts,
        slowlink_verdicts,
    )

    return [
        heartbeat_verdict(results["heartbeats"]),
        sweep_verdict(results["sweep"]),
        release_verdict(results["release"]),
        *deposit_verdicts(results["deposit"]),
        memory_verdict(results["deposit"]),
        *peers_verdicts(results.get("peers", [])),
        *slowlink_verdicts(results.get("slowlink", [])),
    ]


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
