"""Deposit over a slow uplink to S3: velador beside restic, on the same link (issue 14).

An S3 server (moto's standalone server) runs on loopback behind bench/slowlink.py, a proxy that
paces everything the clients send to it at the link's rate (4 MB/s and 1 MB/s by default, all
connections together, as one uplink would). Each tool backs up the issue's tree (bench/peers.py:
3/4 random media, 1/4 CSV text; 64 MiB by default, as 1 GiB would take 18 minutes at 1 MB/s) into
its own empty bucket through that link. The figure is the time until the data is durably stored:
both commands return only once every object has been acknowledged by the S3 server, which
acknowledges a PUT only once it is stored.

Also measured: the bytes that went up (request bodies through the proxy, so protocol overhead of
each tool's signing is counted); both tools with `--limit-upload` set to half of the slower link
(the rate each achieved); and a deposit cut by a link drop half-way and resumed (the bytes and
objects the resumed run sent again, which the issue bounds by one chunk per store).

Run: .venv/bin/python bench/slowlink_bench.py [--quick] [--size-mib 64] [--rates 4,1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from deposit import VELADOR, load, machine  # noqa: E402
from peers import make_tree  # noqa: E402
from slowlink import SlowLink  # noqa: E402

MB = 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}", timeout=1.0)
            return proc, port
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("moto server did not start") from None
            time.sleep(0.1)


def profile(reqs: list, t0: float) -> dict[str, float]:
    """Where a run's time went on the link: requests by kind, the seconds during which some
    request body was going up (the link busy), the first body byte's delay after the start
    (start-up), and the most uploads in flight at once."""
    kinds: dict[str, int] = {}
    for q in reqs:
        kind = "LIST" if q.method == "GET" and "list-type=2" in q.path else q.method
        kinds[kind] = kinds.get(kind, 0) + 1
    spans = sorted((q.start, q.end) for q in reqs if q.length > 0)
    busy, cur_s, cur_e = 0.0, None, None
    for a, b in spans:
        if cur_e is None or a > cur_e:
            busy += (cur_e - cur_s) if cur_e is not None else 0.0
            cur_s, cur_e = a, b
        else:
            cur_e = max(cur_e, b)
    busy += (cur_e - cur_s) if cur_e is not None else 0.0
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    inflight = peak = 0
    for _, d in events:
        inflight += d
        peak = max(peak, inflight)
    return {
        "requests": kinds,
        "link_busy_s": busy,
        "first_body_s": (spans[0][0] - t0) if spans else 0.0,
        "max_uploads_in_flight": peak,
    }


class Bench:
    def __init__(self, root: Path, env: dict[str, str], moto_port: int, link: SlowLink) -> None:
        import boto3

        self.root, self.env, self.link = root, env, link
        self.s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1"
        )
        self.rep = root / "rep"
        self.n = 0
        self.v("id", "new", "--name", "Bench Reporter")
        outlet = root / "o1"
        self.v("id", "new", "--name", "Bench Outlet", "--role", "outlet", home=outlet)
        card = self.v("id", "card", home=outlet).stdout.strip()
        self.v("contact", "add", card, "--alias", "o1")

    def v(self, *args: str, home: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [VELADOR, "--home", str(home or self.rep), *args]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr}")
        return r

    def bucket(self) -> str:
        name = f"bench-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=name)
        return name

    def velador_case(self) -> str:
        self.n += 1
        case = f"slow{self.n}"
        store = f"s3://{self.bucket()}/v?endpoint={self.link.url}"
        self.v(
            *("case", "create", case, "--recipient", "o1", "--threshold", "2", "--shares", "3"),
            *("--offline-dir", str(self.root / f"usb-{case}"), "--store", store),
        )
        return case

    def velador_cmd(self, case: str, src: Path, limit: int | None) -> list[str]:
        cmd = [VELADOR, "--home", str(self.rep), "deposit", case, str(src), "--json"]
        return cmd + (["--limit-upload", str(limit)] if limit else [])

    def restic_repo(self) -> str:
        repo = f"s3:{self.link.url}/{self.bucket()}"
        subprocess.run(
            ["restic", "-r", repo, "init"], env=self.env, check=True, capture_output=True
        )
        return repo

    def timed(self, cmd: list[str]) -> dict[str, float]:
        before = self.link.body_bytes_up
        first = len(self.link.requests)
        t0 = time.monotonic()
        t = time.perf_counter()
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        s = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
        up = self.link.body_bytes_up - before
        return {"s": s, "up_bytes": up, "mb_s": up / MB / s} | profile(
            self.link.requests[first:], t0
        )

    def velador(self, src: Path, limit: int | None = None) -> dict[str, float]:
        return self.timed(self.velador_cmd(self.velador_case(), src, limit))

    def restic(self, src: Path, limit: int | None = None) -> dict[str, float]:
        repo = self.restic_repo()
        cmd = ["restic", "-r", repo, "backup", "--compression", "auto", "-q", str(src)]
        return self.timed(cmd + (["--limit-upload", str(limit)] if limit else []))

    def drop_and_resume(self, src: Path, at_bytes: int) -> dict[str, object]:
        """A deposit cut by the link at `at_bytes`, stopped (SIGINT), resumed once it is back."""
        case = self.velador_case()
        first = len(self.link.requests)
        self.link.drop_after(at_bytes)
        proc = subprocess.Popen(
            self.velador_cmd(case, src, None),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        while not self.link.dropped:
            if proc.poll() is not None:
                raise SystemExit("the deposit ended before the link dropped")
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        cut_run = [q for q in self.link.requests[first:] if "/objects/" in q.path]
        self.link.restore()
        second = len(self.link.requests)
        resumed = self.timed(self.velador_cmd(case, src, None))
        before = {q.path for q in cut_run if q.method == "PUT"}
        again = [
            q
            for q in self.link.requests[second:]
            if q.method == "PUT" and "/objects/" in q.path and q.path in before
        ]
        return {
            "cut_after_bytes": at_bytes,
            "objects_stored_before_cut": sum(
                1 for q in cut_run if q.method == "PUT" and q.complete
            ),
            "objects_resent": len(again),
            "bytes_resent": sum(q.sent for q in again),
            "resumed_s": resumed["s"],
        }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=64, help="tree size (default 64)")
    ap.add_argument("--quick", action="store_true", help="a 16 MiB tree")
    ap.add_argument("--rates", default="4,1", help="link rates in MB/s, comma-separated")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    ap.add_argument(
        "--links-only",
        action="store_true",
        help="only the deposits over each link (no --limit-upload, no drop): for profiling",
    )
    ap.add_argument("--no-restic", action="store_true", help="velador alone (profiling)")
    args = ap.parse_args()
    size = 16 if args.quick else args.size_mib
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    use_restic = bool(shutil.which("restic")) and not args.no_restic
    if not shutil.which("restic"):
        print("slowlink: restic is not installed, left out (apt-get install restic)")
    root = Path(tempfile.mkdtemp(prefix="velador-slowlink-"))
    env = dict(os.environ, VELADOR_PASSPHRASE="bench run passphrase", VELADOR_INSECURE_FAST_KDF="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # a throwaway loopback server
        AWS_DEFAULT_REGION="us-east-1",
        RESTIC_PASSWORD="bench run passphrase",
        RESTIC_CACHE_DIR=str(root / "restic-cache"),
    )
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    load_before = load()
    moto, port = start_moto(env)
    try:
        src = root / "expediente"
        tree = make_tree(src, size)
        with SlowLink(port) as link:
            b = Bench(root, env, port, link)
            rows = []
            for rate in rates:
                link.set_rate(rate * MB)
                row: dict[str, object] = {"link_mb_s": rate, "velador": b.velador(src)}
                if use_restic:
                    row["restic"] = b.restic(src)
                rows.append(row)
                print(f"slowlink: {rate:g} MB/s done", flush=True)
            if args.links_only:
                for row in rows:
                    print(json.dumps(row))
                return
            # --limit-upload at half the slowest link, in KiB/s as both tools take it
            slow = min(rates)
            limit_kib = int(slow * MB / 2 / 1024)
            link.set_rate(slow * MB)
            limited: dict[str, object] = {"link_mb_s": slow, "limit_kib_s": limit_kib}
            limited["velador"] = b.velador(src, limit_kib)
            if use_restic:
                limited["restic"] = b.restic(src, limit_kib)
            link.set_rate(max(rates) * MB)
            drop = b.drop_and_resume(src, tree["bytes"] // 2)
            drop["link_mb_s"] = max(rates)
        print(
            f"\n# slow link — {machine()['host']}, {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d %H:%M')}; tree {tree['bytes'] / 2**20:.0f} MiB; "
            f"S3 on moto behind a pacing proxy; load {load_before} → {load()}\n"
        )
        print("| link | velador s | velador MB up | restic s | restic MB up |")
        print("|---|---|---|---|---|")
        for row in rows:
            v, r = row["velador"], row.get("restic") or {}
            print(
                f"| {row['link_mb_s']:g} MB/s | {v['s']:.1f} | {v['up_bytes'] / MB:.1f} | "
                f"{r.get('s', float('nan')):.1f} | {r.get('up_bytes', 0) / MB:.1f} |"
            )
        for row in rows:
            for tool in ("velador", "restic"):
                p = row.get(tool)
                if p:
                    print(
                        f"  {row['link_mb_s']:g} MB/s {tool}: requests {p['requests']}, link busy "
                        f"{p['link_busy_s']:.1f} of {p['s']:.1f} s, first body byte after "
                        f"{p['first_body_s']:.1f} s, at most {p['max_uploads_in_flight']} "
                        "uploads in flight"
                    )
        lv, lr = limited["velador"], limited.get("restic") or {}
        print(
            f"\n--limit-upload {limit_kib} KiB/s ({limit_kib * 1024 / MB:.2f} MB/s) on the "
            f"{slow:g} MB/s link: velador {lv['mb_s']:.2f} MB/s achieved ({lv['s']:.1f} s), "
            f"restic {lr.get('mb_s', float('nan')):.2f} MB/s ({lr.get('s', float('nan')):.1f} s)"
        )
        print(
            f"link dropped after {drop['cut_after_bytes'] / MB:.1f} MB: "
            f"{drop['objects_stored_before_cut']} object PUTs had completed; the resumed deposit "
            f"re-sent {drop['objects_resent']} object(s), {drop['bytes_resent'] / MB:.2f} MB"
        )
        if args.json:
            out = {
                "machine": machine(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                "tree": tree,
                "load_before": load_before,
                "load_after": load(),
                "links": rows,
                "limited": limited,
                "drop": drop,
            }
            args.json.write_text(json.dumps(out, indent=2) + "\n")
    finally:
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
