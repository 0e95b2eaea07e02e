"""`deposit --limit-upload`: one token bucket for every upload of a deposit (format.md §7.1).

The accounting is checked with an injected clock and a recorded sleep, never by timing: a
reservation answers how long to wait, and the waits add up to what the rate allows. The bucket
is shared through a file by separate openers (as separate processes open it), and a real deposit
to the moto S3 server charges it with every byte it uploads, from its worker processes too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli.context import home_upload_limit
from vault import case as C
from vault import deposit as D
from vault import identity, shares
from vault import state as S
from vault.clock import FakeClock
from vault.errors import FormatError
from vault.stores import ratelimit
from vault.stores.ratelimit import UploadLimiter, limited

KIB = 1024


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_reservations_wait_what_the_rate_allows():
    # Given a bucket of 1,000 bytes/s holding a burst of 500 bytes
    c = Clock()
    lim = UploadLimiter(1000, clock=c, sleep=c.sleep, burst=500)
    # When the burst is taken, nothing waits; beyond it, the debt is paid at the rate
    assert lim.reserve(500) == 0.0
    assert lim.reserve(1500) == pytest.approx(1.5)
    # A second caller in the same instant queues behind the first one's reservation
    assert lim.reserve(1000) == pytest.approx(2.5)
    # After 2.5 s the debt is paid: the next kilobyte waits its own second only
    c.t += 2.5
    assert lim.reserve(1000) == pytest.approx(1.0)
    # A long idle refills the burst and no more: 500 bytes go at once, the next 500 wait 0.5 s
    c.t += 3600
    assert lim.reserve(500) == 0.0
    assert lim.reserve(500) == pytest.approx(0.5)
    assert lim.taken == 5000


def test_acquire_sleeps_so_that_sending_keeps_to_the_rate():
    # Given 20 objects of 64 KiB through a 256 KiB/s bucket
    c = Clock()
    start = c.t
    lim = UploadLimiter(256 * KIB, clock=c, sleep=c.sleep)
    for _ in range(20):
        lim.acquire(64 * KIB)
    # Then the time spent is what the rate allows for everything beyond the burst
    elapsed = c.t - start
    assert elapsed == pytest.approx((20 * 64 * KIB - lim.burst) / (256 * KIB))


def test_openers_of_one_bucket_file_share_one_rate(tmp_path: Path):
    # Given two limiters on one bucket file, as two worker processes open it
    c = Clock()
    path = tmp_path / "bucket"
    a = UploadLimiter(1000, path, clock=c, sleep=c.sleep, burst=1000)
    b = UploadLimiter(1000, path, clock=c, sleep=c.sleep, burst=1000)
    # When each takes the whole burst in turn, the second pays for the first
    assert a.reserve(1000) == 0.0
    assert b.reserve(1000) == pytest.approx(1.0)
    assert a.reserve(1000) == pytest.approx(2.0)
    assert a.taken == b.taken == 3000
    a.close()
    b.close()


def test_a_rate_must_be_positive():
    with pytest.raises(ValueError):
        UploadLimiter(0)


def test_limited_sets_up_and_removes_the_shared_bucket():
    assert ratelimit.current() is None
    with limited(64 * KIB) as lim:
        assert lim is not None and lim.path is not None and lim.path.exists()
        assert ratelimit.current() is lim
        assert ratelimit.worker_env()[ratelimit.ENV].endswith(f":{lim.path}")
        assert ratelimit.ENV not in os.environ  # the process's environment is not touched
    assert ratelimit.worker_env() == {}
    assert ratelimit.current() is None
    assert not lim.path.exists()
    with limited(None) as none:
        assert none is None and ratelimit.current() is None


@pytest.fixture
def s3_case(tmp_path: Path, make_bucket, s3_env):
    rep = identity.create_identity(tmp_path / "r", "Ana", "reporter", "pw", 1)
    out = identity.create_identity(tmp_path / "o", "Diario", "outlet", "pw", 1)
    st = S.LocalState(tmp_path / "r")
    stores = [
        f"s3://{make_bucket()}/v?endpoint={s3_env}",
        f"s3://{make_bucket()}/v?endpoint={s3_env}",
    ]
    nc = C.create_case(
        st,
        rep,
        "caso",
        [out.card],
        shares.ShareSpec(1, ((2, 3),)),
        stores,
        FakeClock(),
        offline_dir=tmp_path / "usb",
    )
    C.register_locally(st, rep, "caso", nc, {})
    return st, rep


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_deposit_to_s3_charges_the_bucket_with_every_byte_it_uploads(s3_case, tmp_path, jobs):
    # Given a case replicated to two S3 buckets and 3 MiB of new files
    st, rep = s3_case
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.bin").write_bytes(os.urandom(1024 * KIB))
    # When it is deposited with a limit (high enough not to wait), by `jobs` processes
    res = None
    with limited(1 << 40) as lim:
        res = D.deposit(st, rep, st.case("caso"), [src], FakeClock(), jobs=jobs)
        taken = lim.taken
    # Then every uploaded byte (chunks to both stores, workers included, and the snapshot) was
    # charged to the one shared bucket, and nothing else was
    assert res.new_chunks >= 3
    assert taken == res.bytes_uploaded


def test_deposit_takes_its_limit_and_clears_it(s3_case, tmp_path):
    st, rep = s3_case
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("nota")
    res = D.deposit(st, rep, st.case("caso"), [src], FakeClock(), limit_upload=1 << 40)
    assert res.bytes_uploaded > 0
    assert ratelimit.current() is None and ratelimit.ENV not in os.environ


def test_the_home_config_gives_the_default_limit(tmp_path: Path):
    assert home_upload_limit(tmp_path) is None
    (tmp_path / "config.toml").write_text('[network]\nproxy = "socks5h://127.0.0.1:9050"\n')
    assert home_upload_limit(tmp_path) is None
    (tmp_path / "config.toml").write_text("[network]\nlimit_upload = 512\n")
    assert home_upload_limit(tmp_path) == 512
    (tmp_path / "config.toml").write_text('[network]\nlimit_upload = "fast"\n')
    with pytest.raises(FormatError, match="limit_upload"):
        home_upload_limit(tmp_path)


def test_overlapping_limited_deposits_restore_the_running_one():
    """Two deposits in one process (browser jobs) ending in the order they started: the
    second keeps its limit, and nothing is left naming a deleted bucket afterwards."""
    before = os.environ.get(ratelimit.ENV)
    a = limited(64 * KIB)
    b = limited(32 * KIB)
    lim_a = a.__enter__()
    lim_b = b.__enter__()
    assert ratelimit.current() is lim_b
    a.__exit__(None, None, None)
    assert ratelimit.current() is lim_b and lim_b.path.exists()
    b.__exit__(None, None, None)
    assert ratelimit.current() is None
    assert ratelimit.worker_env() == {}
    assert os.environ.get(ratelimit.ENV) == before
    assert lim_a is not lim_b
