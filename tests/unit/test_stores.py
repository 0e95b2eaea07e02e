"""Store conformance suite (docs/format.md §7 Stores), in the spirit of restic's backend tests.

Every test taking the ``store`` fixture runs against both backends: ``file://`` in tmp_path and
``s3://`` against the real moto server from conftest (one fresh bucket per test). Backend-specific
behaviour (symlinks, temp files, S3 error mapping) is tested after the shared suite.
"""

from __future__ import annotations

import os
import pickle
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import NotFoundError, StoreError
from vault.stores import FileStore, describe, open_store, validate_key
from vault.stores.s3 import S3Store

SECRET = "Sup3rSecretKeyValue"  # a fake secret that must never reach a message
S3_PREFIX = "cases/c1/"


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store((tmp_path / "store").as_uri())
    endpoint = request.getfixturevalue("s3_env")
    bucket = request.getfixturevalue("make_bucket")()
    # A small page size so a few dozen keys already span several ListObjectsV2 pages.
    return S3Store(f"s3://{bucket}/{S3_PREFIX}?endpoint={endpoint}", page_size=7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _messages(exc: BaseException) -> str:
    return f"{exc} {getattr(exc, 'hint', '')}"


# -- conformance: every backend ------------------------------------------------------------------


def test_put_get_round_trip(store):
    store.put("a/b/c", b"\x00\xffpayload")
    store.put("empty", b"")
    assert store.get("a/b/c") == b"\x00\xffpayload"
    assert store.get("empty") == b""


def test_get_refuses_an_object_larger_than_max_bytes(store):
    """A hostile store must not make a reader allocate what it likes (fetch_chunk's bound)."""
    store.put("big", b"x" * 1000)
    assert store.get("big", max_bytes=1000) == b"x" * 1000
    with pytest.raises(StoreError, match="is larger than 999 bytes"):
        store.get("big", max_bytes=999)
    with pytest.raises(NotFoundError):
        store.get("absent", max_bytes=10)


def test_put_is_idempotent_and_replaces(store):
    store.put("k", b"one")
    store.put("k", b"one")
    assert store.get("k") == b"one"
    store.put("k", b"two")
    assert store.get("k") == b"two"
    assert list(store.list("")) == ["k"]


def test_has_and_size(store):
    assert not store.has("x/y")
    assert store.size("x/y") is None
    store.put("x/y", b"12345")
    assert store.has("x/y")
    assert store.size("x/y") == 5
    assert not store.has("x")  # a "folder" is not an object


def test_list_prefix_sorted_and_paginated(store):
    keys = [f"c1/objects/{i % 3:02x}/{i:064x}" for i in range(30)]
    # Names whose order differs between "sort folder entries" and "sort full keys".
    keys += ["c1/snapshots/a/x", "c1/snapshots/a.b", "c1/snapshots/a-c", "c2/snapshots/z"]
    for k in random.Random(7).sample(keys, len(keys)):
        store.put(k, k.encode())
    assert list(store.list("")) == sorted(keys)
    assert list(store.list("c1/objects/")) == sorted(k for k in keys if "/objects/" in k)
    snapshots = ["c1/snapshots/a-c", "c1/snapshots/a.b", "c1/snapshots/a/x"]
    assert list(store.list("c1/snapshots/")) == snapshots
    assert list(store.list("c3/")) == []
    with pytest.raises(ValueError, match="end with '/'"):
        store.list("c1")


def test_list_sizes_gives_each_object_its_size(store):
    # A deposit learns from one listing what an S3 store holds and how big (format.md §6.6)
    sizes = {f"c1/objects/{i:02x}/{i:064x}": i * 7 for i in range(12)}
    for k, n in sizes.items():
        store.put(k, b"x" * n)
    store.put("c1/snapshots/s", b"snap")
    assert list(store.list_sizes("c1/objects/")) == sorted(sizes.items())
    assert list(store.list_sizes("c9/")) == []
    assert isinstance(store.check_by_listing, bool)


def test_delete_is_idempotent(store):
    store.put("d/k", b"x")
    store.delete("d/k")
    store.delete("d/k")
    store.delete("never/was")
    assert not store.has("d/k")
    assert list(store.list("")) == []


def test_stage_then_commit(store):
    # Staging may happen in another process: the token is a plain string that pickles.
    token = pickle.loads(pickle.dumps(store.stage("c/objects/ab/k1", b"first")))
    assert isinstance(token, str)
    store.commit([("c/objects/ab/k1", token)])
    assert store.get("c/objects/ab/k1") == b"first"
    assert list(store.list("c/")) == ["c/objects/ab/k1"]
    store.commit([])


def test_staging_one_key_twice(store):
    # Two stagings of one key (one chunk encrypted twice in one run): the file store keeps the
    # first committed and never replaces an existing key; S3 has no staging, a stage is a PUT,
    # and the last one stays (vault.deposit evens out the replicas of such a chunk).
    t1 = store.stage("k", b"one")
    t2 = store.stage("k", b"two")
    store.commit([("k", t1), ("k", t2)])
    store.commit([("k", store.stage("k", b"three"))])
    assert store.get("k") == (b"one" if isinstance(store, FileStore) else b"three")


def test_get_missing_is_not_found(store):
    with pytest.raises(NotFoundError) as info:
        store.get("no/such")
    assert str(info.value) == f"store {store.url} has no object no/such"


def test_get_to_file_missing_writes_nothing(store, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(NotFoundError, match="has no object no/such"):
        store.get_to_file("no/such", dest / "f")
    assert list(dest.iterdir()) == []


@pytest.mark.slow
def test_large_file_round_trip(store, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    src, back = work / "big.in", work / "big.out"
    data = random.Random(1).randbytes(20 << 20)
    src.write_bytes(data)
    store.put_file("big/blob", src)
    assert store.size("big/blob") == len(data)
    store.get_to_file("big/blob", back)
    assert back.read_bytes() == data
    assert sorted(p.name for p in work.iterdir()) == ["big.in", "big.out"]  # no temp left
    if isinstance(store, S3Store):
        # 20 MiB in 8 MiB parts: S3 marks a multipart object's ETag with "-<parts>".
        s3 = boto3.client("s3", endpoint_url=store._endpoint, region_name="us-east-1")
        etag = s3.head_object(Bucket=store.bucket, Key=S3_PREFIX + "big/blob")["ETag"]
        assert etag.strip('"').endswith("-3")


HOSTILE = ["../x", "/abs", "a//b", "A", "a/./b", "x\0", "", "a/", "a/..", "é", "a b", "a\\b"]


@pytest.mark.parametrize("key", HOSTILE)
def test_hostile_keys_rejected(store, key, tmp_path):
    calls = [
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.has(key),
        lambda: store.size(key),
        lambda: store.delete(key),
        lambda: store.put_file(key, tmp_path),
        lambda: store.get_to_file(key, tmp_path / "out"),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        store.list(key + "/")


def test_threaded_put_get(store):
    def work(i: int) -> bytes:
        store.put(f"t/{i:03d}", bytes([i]) * 1000)
        return store.get(f"t/{i:03d}")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(40)))
    assert results == [bytes([i]) * 1000 for i in range(40)]


def test_url_reopens_same_store(store):
    store.put("k", b"v")
    assert store.url == describe(store.url)
    assert open_store(store.url).get("k") == b"v"
    assert pickle.loads(pickle.dumps(store)).get("k") == b"v"  # worker processes


# -- keys and URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k", "a/b", "c1/objects/ab/0f", "a.b-c_d", "x" * 512, ".lock"])
def test_validate_key_accepts(key):
    assert validate_key(key) == key


@pytest.mark.parametrize("key", [*HOSTILE, "x" * 513, ".k.0123456789ab.tmp", "a/."])
def test_validate_key_rejects(key):
    with pytest.raises(ValueError):
        validate_key(key)


@given(st.text(alphabet="ab./_-\\\0A", max_size=12))
def test_valid_keys_stay_inside_the_root(key):
    try:
        validate_key(key)
    except ValueError:
        return
    root = Path("/r")
    path = Path(os.path.normpath(root.joinpath(*key.split("/"))))
    assert path.is_relative_to(root) and path != root


def test_describe_strips_secrets():
    url = f"s3://AKIA:{SECRET}@bkt/p?endpoint=http://u:{SECRET}@h:9000&region=eu&token={SECRET}#x"
    assert describe(url) == "s3://bkt/p?endpoint=http://h:9000&region=eu"
    assert describe("rel/dir") == (Path.cwd() / "rel/dir").as_uri()


def test_open_store_paths_and_schemes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_store("rel/dir").url == (tmp_path / "rel/dir").as_uri()
    assert isinstance(open_store(str(tmp_path)), FileStore)
    assert open_store("file://localhost/tmp/x").url == "file:///tmp/x"
    with pytest.raises(StoreError, match="unsupported store URL ftp://h/x") as info:
        open_store(f"ftp://u:{SECRET}@h/x")
    assert info.value.hint == "use file:///path or s3://bucket/prefix"
    assert SECRET not in _messages(info.value)
    with pytest.raises(StoreError, match="must be file:///absolute/path"):
        open_store("file://host/x")


def test_s3_url_refuses_credentials_and_unknown_options():
    with pytest.raises(StoreError, match="must not contain credentials") as info:
        open_store(f"s3://AKIA:{SECRET}@bucket/p")
    assert "AWS_ACCESS_KEY_ID" in info.value.hint
    assert SECRET not in _messages(info.value)
    with pytest.raises(StoreError, match="unknown option 'secret_key'") as info:
        open_store(f"s3://bucket/p?secret_key={SECRET}")
    assert SECRET not in _messages(info.value)


def test_s3_endpoint_precedence(s3_env, make_bucket, monkeypatch):
    bucket, dead = make_bucket(), f"http://127.0.0.1:{_free_port()}"
    # Given a URL whose endpoint is dead, the argument wins.
    open_store(f"s3://{bucket}?endpoint={dead}", s3_endpoint=s3_env).put("k", b"v")
    # Given no argument, the URL's endpoint is used.
    assert open_store(f"s3://{bucket}?endpoint={s3_env}").get("k") == b"v"
    # Given neither, boto3's own configuration is.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env)
    assert open_store(f"s3://{bucket}").get("k") == b"v"


# -- file store ------------------------------------------------------------------------------------


def test_file_refuses_symlink_out_of_root(tmp_path):
    outside, root = tmp_path / "outside", tmp_path / "root"
    outside.mkdir()
    root.mkdir()
    (outside / "x").write_bytes(b"secret")
    (root / "data").symlink_to(outside)
    (root / "leak").symlink_to(outside / "x")
    store = FileStore(root)
    calls = [
        lambda: store.put("data/y", b"v"),
        lambda: store.get("data/x"),
        lambda: store.get("leak"),
        lambda: store.list("data/"),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="refusing to follow a symlink out of store"):
            call()
    assert list(store.list("")) == []  # symlinks are never followed while listing
    assert not (outside / "y").exists()


def test_file_never_lists_temp_or_foreign_files(tmp_path):
    store = FileStore(tmp_path)
    store.put("a/k", b"v")
    for junk in ["a/.k.0123456789ab.tmp", ".x.deadbeef0000.tmp", "README.TXT", "a/b c"]:
        (tmp_path / junk).write_bytes(b"junk")
    assert list(store.list("")) == ["a/k"]


def test_file_interrupted_put_leaves_no_object(tmp_path, monkeypatch):
    store = FileStore(tmp_path)
    store.put("old", b"before")

    def crash(*args):
        raise KeyboardInterrupt  # as if the process died between write and rename

    # Given a crash before the rename and no chance to clean up the temp file,
    monkeypatch.setattr(os, "replace", crash)
    monkeypatch.setattr(os, "unlink", lambda *a, **k: None)
    with pytest.raises(KeyboardInterrupt):
        store.put("new", b"after")
    with pytest.raises(KeyboardInterrupt):
        store.put("old", b"after")
    with pytest.raises(KeyboardInterrupt):
        store.put_file("big", Path(__file__))
    monkeypatch.undo()
    # then readers see the old state only, and the temp files stay invisible.
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]) == 3
    assert list(store.list("")) == ["old"]
    assert store.get("old") == b"before"
    assert not store.has("new")


def test_file_staged_objects_are_invisible_until_commit(tmp_path, monkeypatch):
    store = FileStore(tmp_path)
    token = store.stage("c/objects/ab/k", b"data")
    # Given a staged object, readers do not see it (a crash now leaves only a temp file)
    assert not store.has("c/objects/ab/k") and list(store.list("")) == []
    assert (tmp_path / "c" / "objects" / "ab" / token).read_bytes() == b"data"
    # and commit makes the bytes durable (syncfs) before the name, and the name after
    calls: list[str] = []
    real_sync, real_rename = FileStore.sync, os.rename
    monkeypatch.setattr(FileStore, "sync", lambda self: (calls.append("sync"), real_sync(self)))
    monkeypatch.setattr(os, "rename", lambda a, b: (calls.append("rename"), real_rename(a, b)))
    store.commit([("c/objects/ab/k", token)])
    assert calls == ["sync", "rename", "sync"]
    assert store.get("c/objects/ab/k") == b"data"
    assert [p.name for p in (tmp_path / "c" / "objects" / "ab").iterdir()] == ["k"]


def test_file_commit_refuses_a_foreign_token(tmp_path):
    store = FileStore(tmp_path)
    (tmp_path / "victim").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a staged name"):
        store.commit([("k", "../victim")])
    assert (tmp_path / "victim").read_bytes() == b"x"


def test_file_missing_root_is_empty_until_first_put(tmp_path):
    root = tmp_path / "a" / "b"
    store = FileStore(root)
    assert list(store.list("")) == [] and not store.has("k") and store.size("k") is None
    store.delete("k")
    with pytest.raises(NotFoundError):
        store.get("k")
    store.put("x/k", b"v")
    assert (root.stat().st_mode & 0o777, (root / "x").stat().st_mode & 0o777) == (0o700, 0o700)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700
    assert (root / "x" / "k").stat().st_mode & 0o777 == 0o600


def test_file_unwritable_root(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    store = FileStore(tmp_path / "file" / "store")
    with pytest.raises(StoreError, match=r"cannot write object k to store file://.*: file exists"):
        store.put("k", b"v")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_file_read_only_root(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=r"cannot write object k .*: permission denied"):
            FileStore(tmp_path).put("k", b"v")
    finally:
        tmp_path.chmod(0o700)


# -- s3 store --------------------------------------------------------------------------------------


def test_s3_lists_in_pages(s3_env, make_bucket):
    store = S3Store(f"s3://{make_bucket()}?endpoint={s3_env}", page_size=7)
    for i in range(30):
        store.put(f"p/{i:02d}", b"")
    calls = []
    store._client().meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **kw: calls.append(1)
    )
    assert list(store.list("p/")) == [f"p/{i:02d}" for i in range(30)]
    assert len(calls) == 5


def test_s3_missing_bucket(s3_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    store = open_store(f"s3://velador-no-such-bucket/p?endpoint={s3_env}")
    (tmp_path / "f").write_bytes(b"v")
    calls = [
        lambda: store.get("k"),
        lambda: store.put("k", b"v"),
        lambda: list(store.list("")),
        lambda: store.put_file("k", tmp_path / "f"),
    ]
    for call in calls:
        with pytest.raises(
            StoreError, match="bucket velador-no-such-bucket does not exist"
        ) as info:
            call()
        assert SECRET not in _messages(info.value)


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"])
def test_s3_refused_credentials(s3_env, code):
    # moto's server accepts any credentials, so the refusal is injected into the store's own
    # boto3 client with botocore's Stubber; the mapping code path is the one real calls take.
    store = open_store(f"s3://bucket?endpoint={s3_env}")
    with Stubber(store._client()) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=403)
        stub.add_client_error("put_object", service_error_code=code, http_status_code=403)
        for call in (lambda: store.get("k"), lambda: store.put("k", b"v")):
            with pytest.raises(StoreError, match=f"the S3 store refused the credentials \\({code}"):
                call()


def test_s3_missing_credentials(s3_env, make_bucket, monkeypatch, tmp_path):
    bucket = make_bucket()
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StoreError, match="no S3 credentials found for store") as info:
        open_store(f"s3://{bucket}?endpoint={s3_env}").put("k", b"v")
    assert "AWS_ACCESS_KEY_ID" in info.value.hint


def test_s3_unreachable_endpoint_fails_fast(s3_env):
    dead = f"http://127.0.0.1:{_free_port()}"
    store = S3Store(f"s3://bucket/p?endpoint={dead}", max_attempts=1, connect_timeout=2)
    start = time.monotonic()
    with pytest.raises(StoreError, match=f"cannot reach the S3 endpoint {dead} ") as info:
        store.put("k", b"v")
    assert time.monotonic() - start < 5
    assert "endpoint" in info.value.hint


def test_s3_client_is_built_once_across_threads(s3_env, make_bucket):
    store = S3Store(f"s3://{make_bucket()}?endpoint={s3_env}")
    barrier = threading.Barrier(8)

    def grab(_: int) -> int:
        barrier.wait()
        return id(store._client())

    with ThreadPoolExecutor(8) as pool:
        assert len(set(pool.map(grab, range(8)))) == 1


@pytest.mark.parametrize("url", ["s3://", "s3:///p", "s3://bucket:9000/p", "s3://a b/p"])
def test_s3_url_needs_a_bucket(url):
    with pytest.raises(StoreError, match="names no valid bucket"):
        open_store(url)
