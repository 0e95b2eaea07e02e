"""vault.parallel: results in submission order whatever the workers' speed, errors carried over."""

from __future__ import annotations

import os

import pytest

from vault.errors import StoreError
from vault.parallel import Pool

_STATE: dict[str, int] = {}


def init(base: int) -> None:
    _STATE["base"] = base


def work(n: int) -> tuple[int, int]:
    # Uneven amounts of CPU work, so that answers come back out of order between workers.
    sum(range((n % 7) * 200_000))
    return n + _STATE["base"], os.getpid()


def env_var(name: str) -> str | None:
    return os.environ.get(name)


def fail_on_13(n: int) -> int:
    if n == 13:
        raise StoreError("object 13 is missing or damaged in every store", hint="try again")
    return n


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_results_come_back_in_order(jobs):
    with Pool(jobs, init, (1000,)) as pool:
        out = list(pool.imap(work, range(60), window=5))
    assert [r for r, _ in out] == [1000 + n for n in range(60)]
    pids = {pid for _, pid in out}
    assert (pids == {os.getpid()}) if jobs == 1 else (len(pids) == jobs and os.getpid() not in pids)


def test_a_worker_error_reaches_the_caller_with_its_message():
    with pytest.raises(StoreError) as exc, Pool(2, init, (0,)) as pool:
        for _ in pool.imap(fail_on_13, range(40)):
            pass
    assert str(exc.value) == "object 13 is missing or damaged in every store"
    assert exc.value.hint == "try again"


def test_workers_do_not_see_the_passphrase(monkeypatch):
    monkeypatch.setenv("VELADOR_PASSPHRASE", "do not pass me on")
    with Pool(2, init, (0,)) as pool:
        seen = list(pool.imap(env_var, ["VELADOR_PASSPHRASE"] * 4))
    assert seen == [None] * 4
