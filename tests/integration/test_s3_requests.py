"""What a deposit asks of an S3 store, request by request (format.md §6.6, issue 14).

Over a slow uplink every request costs a round trip, so a deposit lists the case's objects once
(ListObjectsV2, a page per 1,000 keys) instead of a HEAD per chunk, and PUTs each new chunk once.
An object the listing showed but that is deleted before the snapshot is never assumed stored.

Real parts: the moto S3 server, bench/slowlink.py in front of it as a loopback proxy that records
every request (method and path, no pacing), and the deposit in this process (jobs=1).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import boto3
import pytest

from vault import case as C
from vault import deposit as D
from vault import identity, shares
from vault import state as S
from vault.clock import FakeClock

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from slowlink import Request, SlowLink

pytestmark = [pytest.mark.integration]

MIB = 1024 * 1024


@pytest.fixture
def link(s3_env):
    with SlowLink(int(s3_env.rsplit(":", 1)[1])) as link:
        yield link


@pytest.fixture
def s3_case(tmp_path: Path, make_bucket, link):
    rep = identity.create_identity(tmp_path / "r", "Ana", "reporter", "pw", 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", "pw", 1)
    st = S.LocalState(tmp_path / "r")
    bucket = make_bucket()
    nc = C.create_case(
        st,
        rep,
        "caso",
        [out.card],
        shares.ShareSpec(1, ((2, 3),)),
        [f"s3://{bucket}/v?endpoint={link.url}"],
        FakeClock(),
        offline_dir=tmp_path / "usb",
    )
    C.register_locally(st, rep, "caso", nc, {})
    return st, rep, bucket


def kinds(reqs: list[Request]) -> Counter[str]:
    """Requests by what they do: object PUT, snapshot PUT, LIST, HEAD, GET."""
    out: Counter[str] = Counter()
    for q in reqs:
        if q.method == "GET" and "list-type=2" in q.path:
            out["LIST"] += 1
        elif q.method == "PUT":
            out["PUT object" if "/objects/" in q.path else "PUT other"] += 1
        else:
            out[q.method] += 1
    return out


def bucket_keys(s3_env: str, bucket: str) -> set[str]:
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_a_deposit_lists_once_and_puts_each_new_chunk_once_without_head(
    s3_case, link, tmp_path, s3_env
):
    # Given a case on one S3 store and a tree of several chunks
    st, rep, bucket = s3_case
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        # 6 MiB: at least two chunks whatever the case's random chunker seed (CHUNK_MAX 4 MiB;
        # 2 MiB files were one chunk for some seeds, and the count below failed in make test)
        (src / f"video{i}.bin").write_bytes(os.urandom(6 * MIB))
    (src / "notas.txt").write_text("fuente: no nombrar\n" * 50)
    # When it is deposited
    n = len(link.requests)
    res = D.deposit(st, rep, st.case("caso"), [src], FakeClock(), jobs=1)
    asked = kinds(link.requests[n:])
    # Then every new object (chunks, and packs of consecutive chunks, format.md §6.3) was PUT
    # once, the store was listed once, and nothing was HEADed
    assert res.new_chunks >= 7
    stored = {k for k in bucket_keys(s3_env, bucket) if "/objects/" in k}
    assert 3 <= len(stored) < res.new_chunks
    assert asked == {"PUT object": len(stored), "PUT other": 1, "LIST": 1}, asked
    # And a second deposit with one more file asks about the store just as little
    (src / "otra.txt").write_text("segunda entrega\n")
    n = len(link.requests)
    res2 = D.deposit(st, rep, st.case("caso"), [src], FakeClock(), jobs=1)
    assert res2.new_chunks == 1
    assert kinds(link.requests[n:]) == {"PUT object": 1, "PUT other": 1, "LIST": 1}


def test_an_object_listed_then_deleted_is_uploaded_again_before_the_snapshot(
    s3_case, link, tmp_path, s3_env
):
    # Given a deposit cut off after its first chunk was uploaded and before it was recorded
    st, rep, bucket = s3_case
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(3 * MIB))

    def cut(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        D.deposit(st, rep, st.case("caso"), [src], FakeClock(), jobs=1, progress=cut)
    orphans = {k for k in bucket_keys(s3_env, bucket) if "/objects/" in k}
    assert len(orphans) == 1
    assert st.db.execute("SELECT count(*) FROM objects").fetchone()[0] == 0

    # When the resumed deposit lists it, and something deletes it while the deposit runs
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    deleted: list[str] = []

    def delete_once(done: int, total: int) -> None:
        if not deleted:
            for key in orphans:
                s3.delete_object(Bucket=bucket, Key=key)
                deleted.append(key)

    n = len(link.requests)
    res = D.deposit(st, rep, st.case("caso"), [src], FakeClock(), jobs=1, progress=delete_once)
    # Then the deposit did not take the listing's word: the object was PUT again, and every
    # object the index records (so every object the snapshot names) is in the bucket
    assert deleted and res.snapshot_id
    again = [q for q in link.requests[n:] if q.method == "PUT" and q.path.endswith(deleted[0])]
    assert len(again) == 1 and again[0].complete
    recorded = {oid for (oid,) in st.db.execute("SELECT oid FROM objects")}
    stored = {k.rsplit("/", 1)[1] for k in bucket_keys(s3_env, bucket) if "/objects/" in k}
    assert recorded and recorded <= stored
    assert kinds(link.requests[n:])["HEAD"] == 0


def test_a_few_new_chunks_in_a_large_case_are_checked_by_head_not_by_listing(
    s3_case, link, tmp_path
):
    # Given a case whose index knows 2,500 objects (three listing pages) and one new small file
    st, rep, _ = s3_case
    case_id = st.case("caso").policy.case_id
    rows = [
        {"case_id": case_id, "oid": f"{i:064x}", "csize": 1, "chash": None} for i in range(2500)
    ]
    with st.tx():
        st.db["objects"].insert_all(rows)
    src = tmp_path / "src"
    src.mkdir()
    (src / "nota.txt").write_text("una sola nota\n")
    # When it is deposited
    n = len(link.requests)
    res = D.deposit(st, rep, st.case("caso"), [src], FakeClock(), jobs=1)
    # Then one HEAD costs less than listing three pages: the chunk is checked by HEAD
    assert res.new_chunks == 1
    assert kinds(link.requests[n:]) == {"HEAD": 1, "PUT object": 1, "PUT other": 1}
