"""The uplink drops in the middle of a deposit to S3; the resumed deposit re-sends at most the
one chunk per store that was cut (issue 14, format.md §6.6).

Real parts: the moto S3 server, two buckets behind bench/slowlink.py (a loopback proxy that
reads each request going up and can cut every connection once a number of body bytes has gone
through, then refuse new ones, as a dead uplink does), and `velador deposit` as a process. The
proxy counts what the two runs send: every object PUT in the second run that the first run had
also sent (whole or in part) is a re-send. The deposit runs in one process and in three worker
processes (`--jobs 3`): uploads to one store take turns across processes (vault/stores/gate.py),
so the bound is one chunk per store either way (objects under 256 KiB, which skip the turn,
aside: at most one per other worker). A turn goes on once the server has acknowledged the whole
body (vault/stores/handoff.py); the proxy delivers whatever it acknowledged, as a link does.
With several workers the link paces the uploads: three workers and two buckets put, without the
turns, two uploads into one bucket at once whenever the link drops (with two workers, only when
both happen to be on the same bucket).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from vault.stores.gate import SMALL_OBJECT

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from slowlink import Request, SlowLink  # noqa: E402

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
PW = "link drop test passphrase"


def velador(env: dict[str, str], home: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--home", str(home), *map(str, args)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def object_puts(reqs: list[Request]) -> list[Request]:
    return [r for r in reqs if r.method == "PUT" and "/objects/" in r.path]


@pytest.mark.parametrize("jobs", [1, 3])
def test_a_deposit_cut_by_the_link_resends_at_most_one_chunk_per_store(tmp_path, s3_env, jobs):
    port = int(s3_env.rsplit(":", 1)[1])
    env = dict(os.environ, VELADOR_PASSPHRASE=PW, VELADOR_INSECURE_FAST_KDF="1")
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    buckets = ["velador-drop-a", "velador-drop-b"]
    for b in buckets:
        s3.create_bucket(Bucket=b)
    # One process: --limit-upload paces it (and is covered here). Two: the link paces them.
    with SlowLink(port, up_rate=None if jobs == 1 else 8e6) as link:
        # Given a case replicated to two buckets that it reaches through one uplink
        r, o = tmp_path / "reporter", tmp_path / "outlet"
        assert velador(env, r, "id", "new", "--name", "Rita").returncode == 0
        assert velador(env, o, "id", "new", "--name", "Diario", "--role", "outlet").returncode == 0
        card = velador(env, o, "id", "card").stdout.strip()
        assert velador(env, r, "contact", "add", card, "--alias", "diario").returncode == 0
        stores = [a for b in buckets for a in ("--store", f"s3://{b}/v?endpoint={link.url}")]
        made = velador(
            env, r, "case", "create", "inv", "--recipient", "diario", "--threshold", "2",
            "--shares", "3", "--offline-dir", tmp_path / "shares", *stores,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        tree = tmp_path / "inv"
        tree.mkdir()
        for i in range(2):
            (tree / f"video{i}.bin").write_bytes(os.urandom(6 * MIB))

        # When the link drops after 7 MiB of uploads, and the reporter stops the stalled deposit
        link.drop_after(7 * MIB)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "--home",
                str(r),
                "deposit",
                "inv",
                str(tree),
                "--jobs",
                str(jobs),
                *(["--limit-upload", "1048576"] if jobs == 1 else []),
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not link.dropped:
            if proc.poll() is not None:
                seen = [(q.method, q.path, q.complete, q.cut) for q in link.requests][-8:]
                pytest.fail(
                    f"the deposit ended before the drop (code {proc.returncode}, "
                    f"{link.body_bytes_up} body bytes up, last requests {seen}): "
                    f"{proc.stderr.read()}"
                )
            assert time.monotonic() < deadline, "the link never dropped"
            time.sleep(0.01)  # polling interval, not a guess at timing
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err
        # Stopped by the reporter, or (on a loaded machine, before the signal came) given up on
        # the dead link by itself, after its retries: either way an interrupted deposit.
        assert (proc.returncode == 130 and "velador: error: deposit interrupted" in err) or (
            proc.returncode == 74 and "cannot reach the S3 endpoint" in err
        ), err
        first = object_puts(link.requests)
        assert any(q.cut for q in first), "no upload was cut mid-object"
        assert any(q.complete for q in first), "the drop came before any object was stored"

        # Then the resumed deposit, once the link is back, re-sends at most the cut chunk per store
        link.restore()
        link.set_rate(None)
        n = len(link.requests)
        again = velador(env, r, "deposit", "inv", tree, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["files"] == 2
        sent_before = {q.path for q in first}
        second = object_puts(link.requests[n:])
        resent = [q for q in second if q.path in sent_before]
        for b in buckets:
            in_b = [q for q in resent if q.path.startswith(f"/{b}/")]
            # one chunk per store; objects under SMALL_OBJECT (a file's short last chunk) skip
            # the turn, at most one per other worker process (format.md §7.2)
            big = [q for q in in_b if q.length >= SMALL_OBJECT]
            assert len(big) <= 1, [(q.path, q.sent) for q in in_b]
            assert len(in_b) - len(big) <= jobs - 1, [(q.path, q.length) for q in in_b]
        assert {q.path for q in resent} <= {q.path for q in first if not q.complete}
        # and every object is in both buckets
        keys = [
            {o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", [])} for b in buckets
        ]
        assert keys[0] == keys[1] and keys[0]
