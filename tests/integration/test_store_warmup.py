"""S3 stores made ready in the background before a deposit's first upload (issue 14).

`velador deposit` imports boto3 and builds each S3 store's client in a thread while it derives
the passphrase and walks the files (vault/stores/warmup.py), and its worker threads share that
client instead of each building its own. None of it may change an outcome: a failure in the
thread surfaces exactly as it did without it, and no thread outlives the command.

Real parts: the moto S3 server on loopback, the deposit engine and the CLI in this process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import boto3.session
import pytest

from cli.main import main
from vault import case as C
from vault import deposit as D
from vault import identity, shares
from vault import state as S
from vault.clock import FakeClock
from vault.errors import StoreError
from vault.stores import FileStore, open_store
from vault.stores.warmup import StoreWarmup

pytestmark = [pytest.mark.integration]

PW = "pw"
WARMUP = "velador-store-warmup"


def warmup_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WARMUP]


@pytest.fixture
def thread_errors(monkeypatch):
    """Exceptions that escaped any thread: a warm-up must never print one."""
    seen: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


@pytest.fixture
def clients(monkeypatch):
    """Every boto3 client built in this process from now on (a spy: the real one is built)."""
    built: list[str] = []
    real = boto3.session.Session.client

    def spy(self, *args, **kwargs):
        built.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", spy)
    return built


@pytest.fixture
def s3_case(tmp_path: Path, make_bucket, s3_env):
    rep = identity.create_identity(tmp_path / "r", "Ana", "reporter", PW, 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", PW, 1)
    st = S.LocalState(tmp_path / "r")
    url = f"s3://{make_bucket()}/v?endpoint={s3_env}"
    nc = C.create_case(
        st,
        rep,
        "caso",
        [out.card],
        shares.ShareSpec(1, ((2, 3),)),
        [url],
        FakeClock(),
        offline_dir=tmp_path / "usb",
    )
    C.register_locally(st, rep, "caso", nc, {})
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        (data / f"f{i}.bin").write_bytes(os.urandom(300_000))
    return st, rep, url, data


def test_a_deposit_and_its_worker_threads_share_one_s3_client(s3_case, clients):
    # Given a case with one S3 store, a deposit with two worker threads, no warm-up.
    st, rep, _, data = s3_case
    # When it deposits (listing, six objects from two workers, the snapshot).
    res = D.deposit(st, rep, st.case("caso"), [data], FakeClock(), jobs=2)
    # Then it stored them, and built one client: before, each worker and the snapshot's PUT
    # built their own (four in all), each a tenth of a second or more before its first request.
    assert res.new_chunks >= 6 and res.snapshot_id
    assert len(clients) == 1


def test_a_warmed_deposit_builds_its_client_in_the_warmup_thread(s3_case, clients):
    st, rep, url, data = s3_case
    with StoreWarmup([url], s3_endpoint=None) as warm:
        res = D.deposit(st, rep, st.case("caso"), [data], FakeClock(), jobs=2, warm=warm)
    assert res.snapshot_id
    assert clients == [WARMUP]
    assert warmup_threads() == []


def test_the_warmup_hands_over_one_s3_store_and_leaves_other_stores_alone(s3_env, tmp_path):
    url = f"s3://bucket/p?endpoint={s3_env}"
    folder = f"file://{tmp_path / 'store'}"
    with StoreWarmup([folder, url]) as warm:
        first = warm.open(url)
        assert warm.open(url) is first  # one store, one client, shared
        assert first._client_obj is not None  # built in the thread
        assert isinstance(warm.open(folder), FileStore)
        assert warm.open(folder) is not warm.open(folder)  # opened as before, each time
        # Another endpoint than the one warmed: a store of its own, as open_store makes it.
        assert warm.open(url, s3_endpoint="http://127.0.0.1:9") is not first
    assert warmup_threads() == []


@pytest.mark.parametrize(
    "url",
    [
        "s3://user:secret@bucket/p",  # credentials in the URL
        "s3://bucket/p?endpoint=ftp://127.0.0.1:1",  # not an http(s) endpoint
        "s3://bucket/p?color=red",  # unknown option
    ],
)
def test_a_store_that_fails_to_open_in_the_warmup_fails_the_same_when_opened(
    url, s3_env, thread_errors
):
    with pytest.raises(StoreError) as plain:
        open_store(url)
    with StoreWarmup([url]) as warm, pytest.raises(StoreError) as warmed:
        warm.open(url)
    assert (str(warmed.value), warmed.value.hint) == (str(plain.value), plain.value.hint)
    assert "secret" not in str(warmed.value)
    assert thread_errors == []


def test_a_client_that_fails_to_build_in_the_warmup_fails_the_same_on_first_use(
    s3_env, monkeypatch, tmp_path, thread_errors
):
    # A named AWS profile that does not exist: boto3 refuses to build the client.
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    url = f"s3://bucket/p?endpoint={s3_env}"
    with pytest.raises(StoreError) as plain:
        open_store(url).put("k", b"v")
    with StoreWarmup([url]) as warm:
        store = warm.open(url)  # opening worked; the client did not
        with pytest.raises(StoreError) as warmed:
            store.put("k", b"v")
    assert "cannot load the S3 credentials" in str(plain.value)
    assert (str(warmed.value), warmed.value.hint) == (str(plain.value), plain.value.hint)
    assert thread_errors == []


def test_the_warmup_thread_is_joined_when_the_command_fails(s3_env):
    with pytest.raises(KeyError), StoreWarmup([f"s3://bucket/p?endpoint={s3_env}"]):
        raise KeyError("the command failed before it needed the store")
    assert warmup_threads() == []


def test_nothing_is_warmed_when_the_deposit_has_nothing_to_upload(s3_case):
    # Given a tree deposited once, so that every file is in the file cache.
    st, rep, url, data = s3_case
    case_id = st.case("caso").policy.case_id
    assert D.may_upload(st.path, case_id, [data])  # a first deposit: everything is new
    D.deposit(st, rep, st.case("caso"), [data], FakeClock())
    assert not D.may_upload(st.path, case_id, [data])
    # Then an unchanged re-deposit does not get the stores ready (nor import boto3 for them).
    with StoreWarmup([url], needed=lambda: D.may_upload(st.path, case_id, [data])) as warm:
        assert warm.open(url) is not warm.open(url)  # nothing warmed: opened on demand
    # A changed file, or a path that does not exist (the deposit reports it), answer as expected.
    with open(data / "f3.bin", "ab") as fh:
        fh.write(b"+")
    assert D.may_upload(st.path, case_id, [data])
    assert D.may_upload(st.path, case_id, [data / "f3.bin"])
    assert not D.may_upload(st.path, case_id, [data / "f2.bin"])
    assert not D.may_upload(st.path, case_id, [data / "missing"])


def test_a_cli_deposit_whose_s3_client_cannot_be_built_says_so_as_before(
    tmp_path, make_bucket, s3_env, monkeypatch, capsys, thread_errors
):
    # Given a reporter with a case on an S3 store, and then a missing AWS profile.
    def velador(home: Path, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(["--home", str(home), *map(str, args)])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    monkeypatch.setenv("VELADOR_PASSPHRASE", "reporter passphrase")
    r, o = tmp_path / "r", tmp_path / "o"
    assert velador(r, "id", "new", "--name", "Rita Reporter")[0] == 0
    assert velador(o, "id", "new", "--name", "Diario Sur", "--role", "outlet")[0] == 0
    card = velador(o, "id", "card")[1].strip()
    assert velador(r, "contact", "add", card, "--alias", "sur")[0] == 0
    url = f"s3://{make_bucket()}/v?endpoint={s3_env}"
    create = ("case", "create", "inv", "--recipient", "sur", "--threshold", "1", "--shares", "1")
    assert velador(r, *create, "--offline-dir", tmp_path / "usb", "--store", url)[0] == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # When it deposits, the warm-up's client fails in its thread.
    code, _, err = velador(r, "deposit", "inv", tmp_path / "data")
    # Then the command fails with the error and hint it always gave, and nothing else.
    assert code == 74
    assert err.splitlines() == [
        f"velador: error: cannot load the S3 credentials for store {url}",
        "velador: hint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN "
        "if temporary), or AWS_PROFILE with ~/.aws/credentials",
    ]
    assert thread_errors == []
    assert warmup_threads() == []
