"""vault.parallel: results in submission order whatever the workers' speed, errors carried over."""

from __future__ import annotations

import os
import threading

import pytest

from vault.errors import StoreError
from vault.parallel import Pool

_STATE = threading.local()  # per worker thread, as vault.objects keeps its worker state
_CLEANED: list[int] = []


def init(base: int) -> None:
    _STATE.base = base


def work(n: int) -> tuple[int, int]:
    # Uneven amounts of CPU work, so that answers come back out of order between workers.
    sum(range((n % 7) * 200_000))
    return n + _STATE.base, os.getpid()


def where(n: int) -> tuple[int, int]:
    return n + _STATE.base, threading.get_ident()


def cleanup() -> None:
    _CLEANED.append(threading.get_ident())


def env_var(name: str) -> str | None:
    return os.environ.get(name)


def fail_on_13(n: int) -> int:
    if n == 13:
        raise StoreError("object 13 is missing or damaged in every store", hint="try again")
    return n


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_results_come_back_in_order(jobs):
    with Pool(jobs, init, (1000,), threads=False) as pool:
        out = list(pool.imap(work, range(60), window=5))
    assert [r for r, _ in out] == [1000 + n for n in range(60)]
    pids = {pid for _, pid in out}
    assert (pids == {os.getpid()}) if jobs == 1 else (len(pids) == jobs and os.getpid() not in pids)


@pytest.mark.parametrize("jobs", [2, 3])
def test_worker_threads_answer_in_order_each_set_up_and_cleaned_up(jobs):
    # Threads are the default (docs/decisions.md (16)): each is set up by init in its own
    # thread, answers come back in order, and cleanup runs in each as the pool closes.
    _CLEANED.clear()
    with Pool(jobs, init, (1000,), cleanup=cleanup) as pool:
        out = list(pool.imap(where, range(60), window=5))
        again = list(pool.imap(where, range(5)))
    assert [r for r, _ in out] == [1000 + n for n in range(60)]
    assert [r for r, _ in again] == [1000 + n for n in range(5)]
    workers = {tid for _, tid in out + again}
    assert threading.get_ident() not in workers and workers <= set(_CLEANED)
    assert len(_CLEANED) == jobs


def test_answers_to_an_abandoned_call_never_reach_the_next():
    with Pool(2, init, (0,)) as pool:
        first = pool.imap(work, range(40), window=8)
        assert next(first)[0] == 0
        first.close()  # the caller stopped reading: up to 8 answers are still on their way
        assert [r for r, _ in pool.imap(work, range(100, 120))] == list(range(100, 120))


@pytest.mark.parametrize("threads", [True, False])
def test_a_worker_error_reaches_the_caller_with_its_message(threads):
    with pytest.raises(StoreError) as exc, Pool(2, init, (0,), threads=threads) as pool:
        for _ in pool.imap(fail_on_13, range(40)):
            pass
    assert str(exc.value) == "object 13 is missing or damaged in every store"
    assert exc.value.hint == "try again"


def test_workers_do_not_see_the_passphrase(monkeypatch):
    monkeypatch.setenv("VELADOR_PASSPHRASE", "do not pass me on")
    with Pool(2, init, (0,), threads=False) as pool:
        seen = list(pool.imap(env_var, ["VELADOR_PASSPHRASE"] * 4))
    assert seen == [None] * 4


def init_fails(base: int) -> None:
    raise StoreError("store s3://nowhere cannot be opened", hint="check the store")


def test_a_worker_thread_that_cannot_start_answers_every_task_with_its_error():
    with pytest.raises(StoreError, match="cannot be opened"), Pool(2, init_fails, (0,)) as pool:
        list(pool.imap(work, range(10)))
