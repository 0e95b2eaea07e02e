"""Bounded, ordered fan-out of CPU work to worker processes.

pyrage holds the GIL while it encrypts, so threads cannot use a second core; processes can. The
window bounds how many chunks are in flight, which is what keeps memory flat whatever the input
size. Results come back in submission order so files are assembled without buffering.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Pool:
    """Run `fn` inline (jobs == 1) or in `jobs` worker processes set up by `init(*initargs)`."""

    def __init__(self, jobs: int, init: Callable[..., None], initargs: tuple[Any, ...]) -> None:
        self.jobs = jobs
        self._ex: ProcessPoolExecutor | None = None
        if jobs > 1:
            # forkserver: never fork a process that may hold threads (progress bars, boto3 pools).
            ctx = multiprocessing.get_context("forkserver")
            self._ex = ProcessPoolExecutor(
                jobs, mp_context=ctx, initializer=init, initargs=initargs
            )
        else:
            init(*initargs)

    def imap(
        self, fn: Callable[[T], R], items: Iterable[T], window: int | None = None
    ) -> Iterator[R]:
        if self._ex is None:
            for item in items:
                yield fn(item)
            return
        window = window or self.jobs * 3
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(self._ex.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)
            self._ex = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
