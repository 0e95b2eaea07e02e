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


BEFORE = {
    # bench/peers.py --size-mib 1024 --runs 2 at commit 8f2be31 (before issue 14's changes), on
    # the machine of the page, 2026-12-03 11:33 UTC, load 0.65 -> 2.16: the "before" column.
    "velador": {"cold": 6.13, "unchanged": 0.34, "restore": 8.04, "stored_mb": 1077},
    "restic": {"cold": 8.33, "unchanged": 0.61, "restore": 4.33, "stored_mb": 887},
    "borg": {"cold": 5.50, "unchanged": 0.45, "restore": 6.46, "stored_mb": 940},
    "tar | age": {"cold": 3.79, "unchanged": None, "restore": 5.98, "stored_mb": 1078},
}

PROFILE = """\
### Where the time goes (profiles, issue 14)

Profiled with cProfile on the tree above (1 GiB, 2,001 files), the machine shared with other
jobs (load 7 to 17), so the seconds below are inflated and only their shares matter; the CPU
seconds (user + system, worker processes included) hardly depend on the load.

**Recovery, before** (24.6 s under load; 8.0 s in the quiet run): `os.fsync` once per file, 2,001
calls, 8.9 s (36 %); waiting for the workers, 12.6 s, much of it because the pipeline drained at
every file boundary: each CSV file is one chunk, so 2,000 files went through the two workers one
at a time, each waiting for the main process to create, fsync, rename and time-stamp the last;
path checks 0.6 s; reading and checking the snapshot 0.4 s. **After**: one pipeline of chunk
fetches across all files, and one `syncfs` per batch of 256 files before their renames (9 calls,
0.2 s in all) instead of an fsync per file; a file still never appears under its name before
its bytes are durable (docs/format.md §9.3). Whole command: 6.2 CPU s, against restic
restore's 8.6 CPU s measured in the same minutes. What then remained was decryption in the
workers (pyrage, about 1.7–2.0 CPU s/GB), since replaced by the age engine on `cryptography`,
and the reads of the store.

**Unchanged re-deposit, before** (0.59 CPU s; 0.34 s in the quiet run): the recoverability
check of the manifest (`parse_manifest`, every path through `safe_path`) ran although nothing
would be sealed: 1.3 s of the profile; the file cache's path key resolved every path
(`Path.resolve`, a `readlink` per component): 1.2 s; two SQL queries per file (4,004): 0.5 s;
walking the tree (lstat, NFC, `safe_path`): 0.7 s; Python start-up and imports: 1.1 s (click,
the editable-install finder of a development checkout, nacl.pwhash, shamir_mnemonic). **After**
(0.32 CPU s): the check runs only when a snapshot is to be sealed (an unchanged tree is the tree
that passed it last time); the deposited folder is resolved once and the paths below it are
built from it (os.walk enters no symlinked folder and only regular files are kept, so the key is
the same, tested through a symlinked parent and a relative path); the cache is read 500 files
per query. The state DB, the scan (one lstat per file) and the manifest are otherwise untouched:
an unchanged tree writes nothing.

**Cold deposit** (`perf record` over the whole process tree, 1 GiB, load 6 to 9, so shares
only). Before: Python's interpreter 36 % (13 % in the main process, 23 % in the two worker
processes), the kernel 22 % (page-cache copies: the main process reads every byte to cut it,
the workers read it again, then write the objects), zstd 14.5 %, `cryptography` 10 %
(ChaCha20-Poly1305, and X25519 for each object's header), blake3 5.5 %, the chunker 3.5 %. In
cProfile the main process spent 1.1 s of its 3.1 s in `chunk_file`: pyfastcdc's stream reader
zero-fills an 8 MiB buffer per file, 2,000 times for 2,000 small files. Unit costs measured
alone (CPU s per GiB): zstd level 1 on the CSV text 4.2–4.5 and on random data 0.34–0.41 (a trial
thrown away, three quarters of the tree), keyed blake3 0.30, the age engine 0.8 on 1 MiB chunks
(0.18 ms per object for its X25519 header). **After**: a file of at most 256 KiB is one chunk
without being read, and up to 8 MiB is cut in memory (`vault/chunker.py`); a chunk of 128 KiB or
more is tried on a 64 KiB sample before zstd compresses it whole (0.03 CPU s per GiB of media,
docs/format.md §6.3); worker threads instead of processes (docs/decisions.md (8): no
interpreters to start, half the memory). Cold deposit 6.7–7.3 → 5.2–6.9 CPU s, alternating runs
in the same minutes (load 5 to 6). What remains, in order: the text's compression (about 1.1 CPU
s, what buys the 190 MB saved against `tar | age`), page-cache copies in the kernel, Python per
chunk and per file (the store's path checks, staging and renames, 2,600 objects), ChaCha20, the
X25519 header of each object, hashing and cutting.

**Recovery, after the engine** (cProfile, one thread, 1 GiB, load 6): under load the wall time
goes to the file system: opening and reading 2,600 objects and creating 2,000 files. CPU:
writing the chunks (`pwrite`, then writeback started per chunk), zstd decompression of the text,
ChaCha20-Poly1305, the path checks of every output file (an `lstat` per component, a `realpath`
per file: about 0.5 s for 2,000 files) and `pathlib` in the store. Worker threads use 4.8–5.2 CPU
s against 5.7–5.8 for worker processes, alternating in the same minutes.

**Packs** (issue 14, docs/decisions.md (17), format.md §6.3). Before them the three targets
above that were not met all came from one object per chunk: 888.96 MB stored against restic's
887.14 MB (the 2,000 CSV files compressed one by one, 2,000 age headers), 4.67 s cold against
`tar | age`'s 3.16 s (7.0 CPU s: Python work per object, 2,600 objects), and 543 PUTs on the
64 MiB slow-link tree against restic's 8. Now files under 256 KiB are packed together and a large
file's consecutive chunks are grouped, each pack at most 4 MiB and compressed whole; a version 3
snapshot is itself one zstd frame (553 KB of JSON for 2,000 files becomes 116 KB). Measured in
one session on a quiet machine, three runs each of the cold deposit alone: one object per chunk
of a large file 2.93–3.05 s, packs of its chunks 2.31–2.33 s. On the slow link the PUTs went from
543 to 48 (small files packed) to 22 (large files too).

**Slow link** (met, see the section below, by 3 % at 4 MB/s and 1.4 % at 1 MB/s; the margin is
thin). With packs the requests were no longer the cost; three things were (docs/decisions.md
(18)). Each PUT held its store's turn until its answer came back, so the link idled between
bodies; the turn now goes on once the server has acknowledged the whole body. The first body
byte left after about 1.0 s against restic's 0.5 s; boto3's import and client are now made while
the passphrase is derived, and one client (one parsed S3 model) serves the whole deposit: about
0.6 s. And the benchmark's proxy lost link time between one connection's pieces (one stream got
3.70 MB/s of a 4 MB/s link, four streams 3.96), which favoured restic's several connections; it
now has a 20 ms queue. Before these changes, in the same proxy without the queue: 17.0 s against
15.2 at 4 MB/s, 58.5 against 57.0 at 1 MB/s.
"""


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
            fastest[0].replace("|", "\\|"),
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


def slowlink_verdicts(rs: list[Result]) -> list[Verdict]:
    """Issue 14's slow-link targets (bench/slowlink_bench.py): time until durable ≤ restic's on
    each link, and a dropped link re-sends at most one object (of at most a chunk's bytes)."""
    ok = [r for r in rs if r.ok and get(r.figures, "links")]
    if not ok:
        return [Verdict("issue 14: deposit over a slow link beside restic", DASH, None)]
    f = ok[-1].figures or {}
    out = []
    for row in f["links"]:
        mine, theirs = num(row, "velador", "s"), num(row, "restic", "s")
        rate = fmt(num(row, "link_mb_s"), 0)
        target = f"deposit over a {rate} MB/s link ≤ restic, until durable (issue 14)"
        if mine is None or theirs is None:
            out.append(Verdict(target, DASH, None))
            continue
        out.append(
            Verdict(
                target, f"velador {fmt(mine, 1)} s vs restic {fmt(theirs, 1)} s", mine <= theirs
            )
        )
    drop = f.get("drop") or {}
    resent = drop.get("objects_resent")
    out.append(
        Verdict(
            "a dropped link re-sends at most one chunk per store (issue 14)",
            DASH
            if resent is None
            else f"{resent} object(s), {fmt((num(drop, 'bytes_resent') or 0) / 1e6, 2)} MB "
            "(an object is at most 4 MiB, a chunk's most)",
            None if resent is None else resent <= 1,
        )
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
    for label, op in ROWS:
        cpu = [num(f, "tools", t, op, "cpu_s") for t in tools]
        if any(c is not None for c in cpu):
            rows.append([f"{label}, CPU s (all processes)", *[fmt(c, 2) for c in cpu]])
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
    lines += [
        "Before and after issue 14's optimisations. The wall times are **not comparable**: the "
        "before run had the machine nearly to itself (load 0.65 → 2.16), the after run shared it "
        "(load above); each column is only comparable with the peers beside it in the same run. "
        "The CPU seconds, measured before and after in the same minutes (/usr/bin/time, "
        "user + system, workers included, load 6 to 17), are the figure that compares: "
        "recovery 7.3 → 6.2 CPU s (under cProfile both times), unchanged re-deposit "
        "0.59 → 0.32 CPU s.",
        "",
        "| | velador before (quiet) | velador after | restic | borg | tar \\| age |",
        "|---|---|---|---|---|---|",
    ]
    for label, op in ROWS:
        after = _s(f, "velador", op)
        peers = [_s(f, t, op) for t in TOOLS[1:]]
        lines.append(
            f"| {label} | {fmt(BEFORE['velador'][op], 2)} s | {fmt(after, 2)} s | "
            + " | ".join(f"{fmt(x, 2)} s" if x is not None else DASH for x in peers)
            + " |"
        )
    lines += ["", PROFILE, "*Command*:", "", "```sh", r.meta.get("command", DASH), "```", ""]
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
        f"{fmt((num(drop, 'bytes_resent') or 0) / 1e6, 2)} MB. Every object whose PUT had "
        "completed is found by the resumed deposit's listing and not sent again; only what was "
        "in flight when the link dropped goes again. PUTs of 256 KiB or more to one store take "
        "turns across the deposit's workers (format.md §7.2), so that is at most one "
        "chunk per store, the issue's bound, whatever the number of workers, plus at most one "
        "object under 256 KiB per other worker (tests/integration/test_link_drop.py asserts it "
        "with one worker and with three).",
        "",
        *_slowlink_profile(f["links"]),
        "*Command*:",
        "",
        "```sh",
        r.meta.get("command", DASH),
        "```",
        "",
    ]
    return lines


def _slowlink_profile(links: list[dict]) -> list[str]:
    """Where the time goes on the link (bench/slowlink_bench.py `profile`), when measured."""
    out = []
    for row in links:
        for tool in ("velador", "restic"):
            p = row.get(tool) or {}
            if "link_busy_s" not in p:
                continue
            reqs = ", ".join(f"{n} {k}" for k, n in sorted((p.get("requests") or {}).items()))
            out.append(
                f"- {fmt(num(row, 'link_mb_s'), 0)} MB/s, {tool}: {reqs}; the link carried request "
                f"bodies {fmt(num(p, 'link_busy_s'), 1)} s of {fmt(num(p, 's'), 1)} s; first body "
                f"byte after {fmt(num(p, 'first_body_s'), 1)} s; at most "
                f"{p.get('max_uploads_in_flight', DASH)} uploads in flight."
            )
    if not out:
        return []
    return [
        "Where the time goes (requests as the proxy saw them):",
        "",
        *out,
        "",
        "Velador packs small files and a large file's consecutive chunks into objects of up to "
        "4 MiB (format.md §6.3, docs/decisions.md (17)): about 22 PUTs on this tree, 543 before "
        "packs. It sends one object of 256 KiB or more per store at a time (the resume bound "
        "above), and hands the store's turn to the next object as soon as the server has "
        "acknowledged the whole body, without waiting for the answer (format.md §7.2, "
        "docs/decisions.md (18)), so one stream keeps the link busy; restic keeps four or five "
        "uploads in flight. A deposit lists the case's objects once instead of a HEAD per chunk "
        "(format.md §6.6). The proxy gives one connection the link's full rate (a 20 ms queue) "
        "and, when the link drops, delivers what it had acknowledged, as a real link does "
        "(docs/decisions.md (18)).",
        "",
    ]


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
