"""S3 stores made ready in the background while a command does its first, local work (issue 14).

Before its first upload, a deposit to an S3 store imports boto3 (up to a quarter of a second on
the development machine) and builds a boto3 client (another tenth or more), one after the other and
after everything else it does first: the passphrase's Argon2id, walking the files, the file
cache. ``StoreWarmup(urls)`` does the S3 part in one background thread from the moment the
command knows its stores, so it overlaps that work; the KDF runs in C without the GIL, so on two
cores the overlap is real. Stores of other kinds are left alone: opening them costs nothing.
A deposit passes ``needed``, a guess from the file cache (vault.deposit.may_upload), so that an
unchanged re-deposit, which uploads nothing, does not pay for a boto3 it would never use.

It never changes an outcome, by construction rather than by copying errors across threads:

- A store that fails to open in the thread (a malformed URL, an S3 store behind a proxy) is
  simply not kept; ``open`` then calls ``open_store`` itself, which raises the same error at the
  same point of the command as without the warm-up.
- A client that fails to build (a missing AWS profile, an invalid endpoint) leaves the store as
  ``open_store`` made it: ``S3Store`` builds its client on first use and keeps it only once built,
  so the first real request builds it again and raises what it always raised.
- ``open`` waits for the thread, so the caller never races it; ``close`` (or leaving the
  ``with`` block) stops it between steps and joins it, so nothing outlives the command.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from types import TracebackType

from . import open_store
from .base import Store


def is_s3_url(url: str) -> bool:
    """Whether ``url`` names an S3 store (the scheme ``open_store`` sends to vault.stores.s3)."""
    url = url.strip()
    return "://" in url and url.split(":", 1)[0].lower() == "s3"


class StoreWarmup:
    """The S3 stores among ``urls``, opened and their clients built in a background thread (see
    the module docstring). ``open(url, s3_endpoint=...)`` stands in for ``open_store``.

    ``needed()``, if given, runs first in the thread: False leaves everything to ``open`` (a
    deposit with nothing new to upload should not pay for importing boto3 it will not use)."""

    def __init__(
        self,
        urls: list[str],
        *,
        s3_endpoint: str | None = None,
        needed: Callable[[], bool] | None = None,
    ) -> None:
        self._s3_endpoint = s3_endpoint
        self._needed = needed
        self._urls = [u for u in urls if is_s3_url(u)]
        self._ready: dict[str, Store] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._urls:
            self._thread = threading.Thread(
                target=self._run, name="velador-store-warmup", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        try:
            if self._needed is not None and not self._needed():
                return
        except Exception:  # a guess that fails guesses "not needed": open() does the work
            return
        for url in self._urls:
            if self._stop.is_set():
                return
            try:
                store = open_store(url, s3_endpoint=self._s3_endpoint)
            except Exception:  # noqa: S112 - open() opens it again and raises the same error
                continue
            self._ready[url] = store
            build = getattr(store, "_client", None)  # S3Store's lazy client (vault.stores.s3)
            if build is not None and not self._stop.is_set():
                with contextlib.suppress(Exception):  # built, and raised, again on first use
                    build()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def open(self, url: str, *, s3_endpoint: str | None = None) -> Store:
        """``open_store(url, s3_endpoint=s3_endpoint)``: the warmed store when there is one, the
        same instance each time (an S3 store is safe to share between threads)."""
        self.wait()
        store = self._ready.get(url) if s3_endpoint == self._s3_endpoint else None
        return store if store is not None else open_store(url, s3_endpoint=s3_endpoint)

    def close(self) -> None:
        """Stop after the current step (an import cannot be cut short) and join the thread."""
        self._stop.set()
        self.wait()

    def __enter__(self) -> StoreWarmup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
