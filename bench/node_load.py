"""Escrow node benchmark (issue 3): prints figures, asserts nothing.

    .venv/bin/python bench/node_load.py [--seconds 10] [--cases 200] [--concurrency 32]
                                        [--sweep-cases 100000]

1. Heartbeats: a real `velador node serve` process; this process (the second one) sends
   pre-signed heartbeats (request signature + reporter-signed heartbeat, made before the timed
   phase so the load generator's own crypto does not count) to `--cases` cases over HTTP with
   `--concurrency` connections, and reports sustained verified heartbeats/s, p50/p99 latency,
   the node's CPU seconds per heartbeat (all threads of the serving process, plus its live
   verification worker processes, `--verify-workers`, the node's `[workers] verify`, default 1;
   from /proc) and the load generator's own CPU use (it shares the machine's cores with the
   node).
   Each heartbeat is fully verified, persisted (synchronous=FULL) and answered with a signed
   receipt by the node.
2. Release latency: a case with every=1 s, grace=0 on the same node, real clock; time from the
   due second to (a) the envelopes being fetchable by a recipient and (b) the release webhook
   arriving at a receiver in this process.
3. Sweep: `--sweep-cases` cases in a node database (rows cloned from a real registration, each
   with its own reporter-signed policy);
   time of a sweep with none due, with 1% due (reminders) and the start-up sweep after an outage
   where all are overdue is not measured (it sends notices for every case).

Identities use the insecure fast KDF (VELADOR_INSECURE_FAST_KDF=1): key files are not what is
measured.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ["VELADOR_INSECURE_FAST_KDF"] = "1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tomli_w  # noqa: E402

from tests.conftest import free_port, wait_http  # noqa: E402
from tests.node.builders import make_world  # noqa: E402
from vault.clock import SystemClock  # noqa: E402
from vault.encoding import b64e, canonical_json  # noqa: E402
from vault.identity import load_card  # noqa: E402
from vault.nodeproto.auth import sign_request  # noqa: E402
from vault.nodeproto.client import NodeClient  # noqa: E402
from vault.nodeproto.messages import make_heartbeat  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def init_node(root: Path, name: str) -> tuple[Path, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = root / name
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.node_cmds",
            "init",
            "--data",
            str(data),
            "--name",
            name,
            "--url",
            url,
            "--port",
            str(port),
            "--registration",
            "open",
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    cfg = tomllib.loads((data / "node.toml").read_text())
    cfg["limits"].update({"rate_per_key": 100000, "rate_burst": 100000})
    cfg["registration"]["allow_private_targets"] = True  # peers on loopback
    (data / "node.toml").write_text(tomli_w.dumps(cfg))
    return data, url


def start_node(data: Path, url: str, tick: float = 1.0) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.node_cmds",
            "serve",
            "--data",
            str(data),
            "--tick",
            str(tick),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(url + "/v1/health")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(pid: int) -> float:
    """CPU seconds of the live child processes of `pid` (the node's verification workers):
    they are the node's work too, and /proc only adds a child's time to its parent once the
    child has ended."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process, by thread id (Python 3.11 does not name its threads
    for the OS, so ids are what there is)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[task.name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


# --- 1. heartbeats ---------------------------------------------------------------------------


def bench_heartbeats(
    root: Path, seconds: float, n_cases: int, concurrency: int, verify_workers: int = 1
) -> dict:
    data, url = init_node(root, "bench-node")
    cfg = tomllib.loads((data / "node.toml").read_text())
    cfg["workers"] = {"verify": verify_workers}
    (data / "node.toml").write_text(tomli_w.dumps(cfg))
    card = load_card(data)
    proc = start_node(data, url)
    clock = SystemClock()
    try:
        people: dict = {}
        worlds = []
        t = time.perf_counter()
        for _ in range(n_cases):
            # A fresh reporter per case, as in reality (and so per-key limits are realistic).
            people.pop("reporter", None)
            w = make_world(
                root / "people",
                [card],
                people=people,
                n_editors=1,
                quorum=1,
                n_recipients=1,
                every=86400,
                grace=3600,
            )
            with NodeClient(card, w.reporter, clock) as c:
                c.register_case(w.policy, w.envs_for(card))
            worlds.append(w)
        print(f"setup: {n_cases} cases registered in {time.perf_counter() - t:.1f} s")
        # Pre-sign enough heartbeats (request signature included) for the timed phase.
        total = int(seconds * 2500)
        reqs = []
        now = clock.now()
        for k in range(total):
            w = worlds[k % n_cases]
            seq = k // n_cases + 1
            body = canonical_json(make_heartbeat(w.policy, w.reporter.sign_key, seq, now))
            path = f"/v1/cases/{w.policy.case_id}/heartbeat"
            hdr = sign_request(
                w.reporter.sign_key, card.sign_pk, "POST", path, body, now, w.policy.case_id
            )
            reqs.append((path, body, hdr))
        print(f"pre-signed {total} heartbeats")
        node_cpu0, gen_cpu0 = proc_cpu(proc.pid), time.process_time()
        workers_cpu0 = children_cpu(proc.pid)
        threads0 = thread_cpu(proc.pid)
        lat, ok, bad = asyncio.run(_drive(url, reqs, seconds, concurrency))
        node_cpu, gen_cpu = proc_cpu(proc.pid) - node_cpu0, time.process_time() - gen_cpu0
        workers_cpu = children_cpu(proc.pid) - workers_cpu0
        # Per node thread, largest first: the event loop, the db writer and the verification
        # threads are told apart by their share, not their names.
        threads = sorted(
            (
                round((cpu - threads0.get(tid, 0.0)) / max(ok, 1) * 1e6)
                for tid, cpu in thread_cpu(proc.pid).items()
            ),
            reverse=True,
        )
        threads = [t for t in threads if t > 0]
        if not lat:
            lat = [float("nan")]
        rate = ok / seconds
        print(
            f"heartbeats: {ok} accepted in {seconds:.0f} s = {rate:,.0f}/s "
            f"(concurrency {concurrency}, {bad} errors)"
        )
        total_cpu = node_cpu + workers_cpu
        print(
            f"cpu: node {total_cpu:.2f} s = {total_cpu / max(ok, 1) * 1e6:.0f} us per heartbeat "
            f"(serving process {node_cpu / max(ok, 1) * 1e6:.0f} us, {verify_workers} "
            f"verification worker(s) {workers_cpu / max(ok, 1) * 1e6:.0f} us); "
            f"load generator {gen_cpu:.2f} s ({gen_cpu / seconds:.0%} of one core)"
        )
        print(f"serving process cpu by thread (us per heartbeat): {threads}")
        print(
            f"latency: p50 {pct(lat, 0.50) * 1000:.1f} ms, p99 {pct(lat, 0.99) * 1000:.1f} ms, "
            f"max {max(lat) * 1000:.1f} ms"
        )
        met = rate >= 1000 and pct(lat, 0.99) < 0.1
        print(f"target >= 1,000/s and p99 < 100 ms: {'met' if met else 'NOT met'}")
        return {
            "concurrency": concurrency,
            "cases": n_cases,
            "seconds": seconds,
            "accepted": ok,
            "errors": bad,
            "per_s": rate,
            "p50_ms": pct(lat, 0.50) * 1000,
            "p99_ms": pct(lat, 0.99) * 1000,
            "max_ms": max(lat) * 1000,
            "node_cpu_us_per_hb": total_cpu / max(ok, 1) * 1e6,
            "serving_cpu_us_per_hb": node_cpu / max(ok, 1) * 1e6,
            "workers_cpu_us_per_hb": workers_cpu / max(ok, 1) * 1e6,
            "verify_workers": verify_workers,
            "node_threads_cpu_us_per_hb": threads,
            "generator_cpu_s": gen_cpu,
            "load_after": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        }
    finally:
        stop(proc)


async def _drive(url: str, reqs: list, seconds: float, concurrency: int):
    """Keep-alive HTTP/1.1 over raw asyncio streams: a load generator much lighter than an
    HTTP client library, so the node (not the generator) is what is measured."""
    host, port = url.removeprefix("http://").split(":")
    lat: list[float] = []
    ok = bad = 0
    it = iter(reqs)
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal ok, bad
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < end:
                try:
                    path, body, hdr = next(it)
                except StopIteration:
                    return
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {hdr}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                t = time.perf_counter()
                writer.write(head.encode() + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                answer = await reader.readexactly(length)
                lat.append(time.perf_counter() - t)
                if b" 200 " in status_line:
                    ok += 1
                else:
                    bad += 1
                    if bad < 4:
                        print("error:", status_line.strip().decode(), answer[:200].decode())
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, ok, bad


# --- 2. release latency ------------------------------------------------------------------


def bench_release(root: Path) -> dict:
    data, url = init_node(root, "release-node")
    card = load_card(data)
    got: dict[str, float] = {}

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if body["body"]["event"] == "released":
                got.setdefault(body["body"]["case_id"], time.time())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc = start_node(data, url, tick=30.0)  # the exact-time job must do it, not the sweep
    clock = SystemClock()
    results = []
    try:
        for _ in range(5):
            w = make_world(root / "people2", [card], every=2, grace=0, remind=(), n_recipients=1)
            cid = w.policy.case_id
            with (
                NodeClient(card, w.reporter, clock) as rep,
                NodeClient(card, w.recipients[0], clock) as rec,
            ):
                receipt = rep.register_case(w.policy, w.envs_for(card))
                rec.subscribe(cid, "webhook", f"http://127.0.0.1:{server.server_port}/hook")
                due = receipt["release_at"]
                fetched = None
                while time.time() < due + 10:
                    try:
                        rec.fetch_release(cid)
                        fetched = time.time()
                        break
                    except Exception:
                        time.sleep(0.005)
                while cid not in got and time.time() < due + 10:
                    time.sleep(0.005)
                if fetched is None or cid not in got:
                    print("release did not happen within 10 s")
                    continue
                results.append((fetched - due, got[cid] - due))
        for f, n in results:
            print(
                f"release latency: envelopes fetchable {f * 1000:.0f} ms, "
                f"webhook delivered {n * 1000:.0f} ms after due"
            )
        worst = max(max(r) for r in results)
        print(f"target < 2 s: {'met' if worst < 2 else 'NOT met'} (worst {worst * 1000:.0f} ms)")
        return {
            "fetchable_ms": [f * 1000 for f, _ in results],
            "webhook_ms": [n * 1000 for _, n in results],
            "missed": 5 - len(results),
        }
    finally:
        stop(proc)
        server.shutdown()


# --- 3. sweep over many cases ---------------------------------------------------------------


SETUP_CHUNK = 10_000
"""Rows built and inserted per transaction when setting up the sweep benchmark."""


class PolicyCloner:
    """Signed copies of one policy body under other case ids, as stored text and hash.

    The canonical bytes of a body differ from the template's only in the case id (same length,
    a plain ASCII string), so each copy is a byte substitution plus one Ed25519 signature instead
    of a canonical encoding, a signature, a hash and a JSON dump of a 3 kB document: the set-up
    of 1,000,000 cases stays in minutes. The first copy is checked byte for byte against
    sign_document (Ed25519 signatures are deterministic), so the shortcut cannot drift from
    what the node verifies.
    """

    PLACEHOLDER = "bench-XXXXXXXX"

    def __init__(self, body: dict, key) -> None:  # type: ignore[no-untyped-def]
        from vault.constants import SIG_LABELS

        self.key = key
        self.template = canonical_json(dict(body, case_id=self.PLACEHOLDER))
        if self.template.count(self.PLACEHOLDER.encode()) != 1:
            raise RuntimeError("the placeholder case id is not unique in the policy body")
        self.label = SIG_LABELS["policy"] + b"\n"
        self.signer = b64e(bytes(key.verify_key)).encode()
        self.body = body
        self.checked = False

    def __call__(self, case_id: str) -> tuple[str, str]:
        if len(case_id) != len(self.PLACEHOLDER) or not case_id.isascii():
            raise ValueError("case ids must have the placeholder's length")
        body = self.template.replace(self.PLACEHOLDER.encode(), case_id.encode())
        sig = b64e(self.key.sign(self.label + body).signature).encode()
        doc = b'{"body":%s,"kind":"policy","sig":"%s","signer":"%s"}' % (body, sig, self.signer)
        digest = hashlib.blake2b(doc, digest_size=32).hexdigest()
        if not self.checked:
            from vault.encoding import doc_hash
            from vault.signing import sign_document

            ref = sign_document("policy", dict(self.body, case_id=case_id), self.key)
            if canonical_json(ref) != doc or doc_hash(ref) != digest:
                raise RuntimeError("cloned policy differs from sign_document's")
            self.checked = True
        return doc.decode(), digest


def bench_sweep(root: Path, n: int) -> dict:
    from escrow_node.app import create_app  # noqa: F401 - imports the node stack
    from escrow_node.config import load_config
    from escrow_node.db import Store
    from escrow_node.service import NodeService
    from escrow_node.sweep import sweep
    from vault.clock import FakeClock
    from vault.identity import unlock_identity

    data, _ = init_node(root, "sweep-node")
    card = load_card(data)
    config = load_config(data)
    ident = unlock_identity(data, (data / "node.passphrase").read_text().strip())
    store = Store(config.db_path)
    t0 = 1_767_225_600
    clock = FakeClock(t0)
    svc = NodeService(config, ident, store, clock)
    # One real registration, then clone its row. Each clone gets its own policy (the same body
    # with its own case id, signed by the reporter), so every row is a consistent case: the node
    # refuses to write through a row whose policy names another case.
    w = make_world(root / "people3", [card], every=86400, grace=3600, remind=(3600,))
    from escrow_node import operations
    from escrow_node.auth import verify_request

    body = canonical_json({"policy": w.policy.doc, "envelopes": w.envs_for(card)})
    hdr = sign_request(w.reporter.sign_key, card.sign_pk, "POST", "/v1/cases", body, t0)
    req = verify_request(hdr, "POST", "/v1/cases", "", body, card.sign_pk, t0)
    operations.register(svc, req, body)
    t = time.perf_counter()
    with store.read() as conn:
        row = dict(conn.execute("SELECT * FROM cases").fetchone())
    cols = list(row)
    insert = f"INSERT INTO cases ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    clone = PolicyCloner(w.policy.body(), w.reporter.sign_key)
    due = n // 100
    for start in range(0, n, SETUP_CHUNK):
        # Bounded memory: one chunk of rows at a time, one transaction each.
        rows = []
        for i in range(start, min(n, start + SETUP_CHUNK)):
            case_id = f"bench-{i:08d}"
            text, policy_hash = clone(case_id)
            r = dict(row, case_id=case_id, policy=text, policy_hash=policy_hash)
            # 1% get their reminder due at t0 + 100; the rest months later.
            r["deadline"] = t0 + 100 + 3600 if i < due else t0 + 90 * 86400 + i
            r["next_wake"] = r["deadline"] - 3600
            rows.append(tuple(r[c] for c in cols))
        with store.tx() as conn:
            conn.executemany(insert, rows)
    setup_s = time.perf_counter() - t
    print(f"sweep setup: {n:,} cases inserted in {setup_s:.1f} s")
    clock.set(t0 + 50)
    r0 = sweep(svc)
    print(f"sweep over {n:,} cases, none due: {r0.seconds * 1000:.1f} ms")
    clock.set(t0 + 100)
    r1 = sweep(svc)
    print(
        f"sweep over {n:,} cases, {r1.advanced:,} due (reminder notices written): "
        f"{r1.seconds * 1000:.0f} ms"
    )
    ok = r0.seconds < 1 and r1.seconds < 1
    print(f"target < 1 s: {'met' if ok else 'NOT met'}")
    store.close()
    return {
        "cases": n,
        "none_due_ms": r0.seconds * 1000,
        "due": r1.advanced,
        "due_ms": r1.seconds * 1000,
        "setup_s": setup_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--sweep-cases", type=int, default=100_000)
    ap.add_argument(
        "--verify-workers",
        type=int,
        default=1,
        help="the node's [workers] verify (0: checks in the serving process)",
    )
    ap.add_argument("--only", choices=["heartbeats", "release", "sweep"])
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args()
    figures: dict = {
        "machine": {
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_before": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        },
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    root = Path(tempfile.mkdtemp(prefix="velador-bench-"))
    try:
        print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
        if args.only in (None, "heartbeats"):
            figures["heartbeats"] = bench_heartbeats(
                root, args.seconds, args.cases, args.concurrency, args.verify_workers
            )
        if args.only in (None, "release"):
            figures["release"] = bench_release(root)
        if args.only in (None, "sweep"):
            figures["sweep"] = bench_sweep(root, args.sweep_cases)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
