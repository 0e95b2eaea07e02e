"""The "peers" and "slow link" sections of docs/benchmarks.md (issue 14), from saved results.

bench/peers.py measures velador beside restic, borg and `tar | age`; bench/slowlink_bench.py
measures velador and restic to S3 through a paced uplink. This module computes the issue 14
verdicts from their JSON (never by hand), lays out their tables, and draws the peers plot. Kept
apart from report_render/report_data so that those stay as they were, save one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from report_data import DASH, Result, Verdict, fmt, get, load_cell, num

TOOLS = ("velador", "restic", "borg", "tar | age")
ROWS = (
    ("cold deposit / backup", "cold"),
    ("unchanged re-deposit", "unchanged"),
    ("recover / restore", "restore"),
)


def _peers(rs: list[Result]) -> dict[str, Any] | None:
    ok = [r for r in rs if r.ok and get(r.figures, "tools", "velador")]
    return ok[-1].figures if ok else None


def _s(f: dict[str, Any] | None, tool: str, op: str) -> float | None:
    return num(f, "tools", tool, op, "s")


def peers_verdicts(rs: list[Result]) -> list[Verdict]:
    """Issue 14's targets, side by side in one run (bench/peers.py)."""
    f = _peers(rs)
    if f is None:
        return [Verdict("issue 14: velador beside restic, borg, tar | age", DASH, None)]
    out = []

    def vs(target: str, mine: float | None, theirs: float | None, unit: str, what: str) -> None:
        if mine is None or theirs is None:
            out.append(Verdict(target, DASH, None))
            return
        nd = 2 if unit == "s" else 0
        out.append(
            Verdict(
                target,
                f"velador {fmt(mine, nd)} {unit} vs {what} {fmt(theirs, nd)} {unit}",
                mine <= theirs,
            )
        )

    vs(
        "recovery ≤ restic restore (issue 14)",
        _s(f, "velador", "restore"),
        _s(f, "restic", "restore"),
        "s",
        "restic",
    )
    vs(
        "unchanged re-deposit ≤ borg, whole command (issue 14)",
        _s(f, "velador", "unchanged"),
        _s(f, "borg", "unchanged"),
        "s",
        "borg",
    )
    peers = [(t, _s(f, t, "cold")) for t in TOOLS[1:]]
    peers = [(t, s) for t, s in peers if s is not None]
    if peers:
        fastest = min(peers, key=lambda p: p[1])
        vs(
            "cold deposit ≤ the fastest peer (issue 14)",
            _s(f, "velador", "cold"),
            fastest[1],
            "s",
            fastest[0],
        )
    mine, theirs = (
        num(f, "tools", "velador", "stored_bytes"),
        num(f, "tools", "restic", "stored_bytes"),
    )
    vs(
        "bytes stored ≤ restic's (issue 14)",
        None if mine is None else mine / 1e6,
        None if theirs is None else theirs / 1e6,
        "MB",
        "restic",
    )
    return out


def section_peers(rs: list[Result], image: str | None) -> list[str]:
    lines = ["## Beside restic, borg and tar | age (issue 14)", ""]
    f = _peers(rs)
    if f is None:
        status = "; ".join(f"`{r.name}`: {r.status}" for r in rs) or "not run"
        return [*lines, f"Not measured ({status}).", ""]
    if image:
        lines += [f"![velador beside restic, borg and tar | age]({image})", ""]
    tools = [t for t in TOOLS if t in f["tools"]]
    head = ["", *[t.replace("|", "\\|") for t in tools]]
    rows = []
    for label, op in ROWS:
        rows.append(
            [label, *[fmt(_s(f, t, op), 2) + (" s" if _s(f, t, op) else "") for t in tools]]
        )
    rows.append(
        [
            "bytes stored",
            *[f"{fmt((num(f, 'tools', t, 'stored_bytes') or 0) / 1e6, 0)} MB" for t in tools],
        ]
    )
    rows.append(
        ["peak RSS, recover / restore (MiB)"]
        + [fmt(num(f, "tools", t, "restore", "rss_mib"), 0) for t in tools]
    )
    rows.append(
        ["restored byte-identical"]
        + [{True: "yes", False: "**NO**"}.get(get(f, "tools", t, "identical"), DASH) for t in tools]
    )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    tree = f.get("tree", {})
    r = rs[-1]
    lines += [
        "",
        f"Tree: {fmt((tree.get('bytes') or 0) / 2**20, 0)} MiB, {tree.get('files', DASH)} files "
        f"in {tree.get('folders', DASH)} folders (3/4 random media in one file, 1/4 CSV text); "
        f"best of {f.get('runs', DASH)} runs; load {load_cell(r)}. Versions: "
        + "; ".join(f"{t} {get(f, 'tools', t, 'version') or '?'}" for t in tools)
        + ".",
        "",
        "Durable storage: velador syncs the store's file system (syncfs) before and after each "
        "batch of renames; restic fsyncs each file it writes into a local repository; borg fsyncs "
        "its segments and index on commit; `tar | age` does not fsync, so `sync -f` follows it "
        "and is timed with it. On restore, velador makes each batch of files durable (syncfs) "
        "before giving them their names; restic, borg and `age -d | tar x` do not fsync.",
        "",
    ]
    if f.get("missing"):
        lines += [
            "Missing tools (left out): "
            + ", ".join(f"{t} (`apt-get install {p}`)" for t, p in f["missing"].items()),
            "",
        ]
    lines += ["*Command*:", "", "```sh", r.meta.get("command", DASH), "```", ""]
    return lines


def section_slowlink(rs: list[Result]) -> list[str]:
    lines = ["## Deposit over a slow uplink to S3 (issue 14)", ""]
    ok = [r for r in rs if r.ok and get(r.figures, "links")]
    if not ok:
        status = "; ".join(f"`{r.name}`: {r.status}" for r in rs) or "not run"
        return [*lines, f"Not measured ({status}).", ""]
    r = ok[-1]
    f = r.figures or {}
    lines += [
        "| link | velador s | velador MB sent | restic s | restic MB sent |",
        "|---|---|---|---|---|",
    ]
    for row in f["links"]:
        lines.append(
            f"| {fmt(num(row, 'link_mb_s'), 0)} MB/s | {fmt(num(row, 'velador', 's'), 1)} | "
            f"{fmt((num(row, 'velador', 'up_bytes') or 0) / 1e6, 1)} | "
            f"{fmt(num(row, 'restic', 's'), 1)} | "
            f"{fmt((num(row, 'restic', 'up_bytes') or 0) / 1e6, 1)} |"
        )
    lim, drop = f.get("limited", {}), f.get("drop", {})
    lines += [
        "",
        f"Time until the data is durably stored (each command returns once the S3 server has "
        f"acknowledged every object). Tree {fmt((get(f, 'tree', 'bytes') or 0) / 2**20, 0)} MiB "
        f"(as in the peers section); S3 = moto's server on loopback behind bench/slowlink.py, "
        f"which paces every byte the clients send; load {load_cell(r)}.",
        "",
        f"`--limit-upload {lim.get('limit_kib_s', DASH)}` (KiB/s) on the "
        f"{fmt(num(lim, 'link_mb_s'), 0)} MB/s link: velador sent at "
        f"{fmt(num(lim, 'velador', 'mb_s'), 2)} MB/s, restic at "
        f"{fmt(num(lim, 'restic', 'mb_s'), 2)} MB/s "
        f"(limit {fmt((lim.get('limit_kib_s') or 0) * 1024 / 1e6, 2)} MB/s).",
        "",
        f"Link dropped after {fmt((num(drop, 'cut_after_bytes') or 0) / 1e6, 1)} MB, the deposit "
        f"stopped and run again once the link was back: it sent "
        f"{drop.get('objects_resent', DASH)} object(s) again, "
        f"{fmt((num(drop, 'bytes_resent') or 0) / 1e6, 2)} MB (issue bound: one chunk per store; "
        "tested by tests/integration/test_link_drop.py).",
        "",
        "*Command*:",
        "",
        "```sh",
        r.meta.get("command", DASH),
        "```",
        "",
    ]
    return lines


def plot_peers(rs: list[Result], path: Path) -> Path | None:
    f = _peers(rs)
    if f is None:
        return None
    import matplotlib.pyplot as plt
    from report_plots import _caption, _save

    tools = [t for t in TOOLS if t in f["tools"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [3, 1]})
    w = 0.8 / len(tools)
    for i, t in enumerate(tools):
        xs = [k + (i - (len(tools) - 1) / 2) * w for k in range(len(ROWS))]
        a1.bar(xs, [_s(f, t, op) or 0 for _, op in ROWS], w, label=t, color=f"C{i}")
    a1.set_xticks(range(len(ROWS)), [label for label, _ in ROWS])
    a1.set_ylabel("seconds, whole command (lower is better)")
    a1.set_title("Same tree, one after another")
    a1.legend()
    a1.grid(True, axis="y", alpha=0.3)
    a2.bar(
        range(len(tools)),
        [(num(f, "tools", t, "stored_bytes") or 0) / 1e6 for t in tools],
        color=[f"C{i}" for i in range(len(tools))],
    )
    a2.set_xticks(range(len(tools)), tools, rotation=20)
    a2.set_ylabel("MB stored")
    a2.set_title("Bytes stored")
    a2.grid(True, axis="y", alpha=0.3)
    _caption(fig, rs)
    return _save(fig, path)
