"""Bounded, ordered fan-out of CPU work to worker threads (or processes).

Threads by default (docs/decisions.md (8), update of issue 14). The hot path no longer holds the
GIL: chunks are encrypted by vault/agev1.py on `cryptography`'s AEAD, compressed by zstandard,
hashed by blake3, read by os.pread and cut by pyfastcdc, all of which release it (cryptography
50.0: bench/workers.py probes each); a thread in any of them lets the others run. Measured on
the 2-core development machine (bench/peers.py tree, load average 4 to 6 from other work):

    tree      mode       deposit CPU s  peak RSS   recover CPU s  peak RSS
    256 MiB   threads    3.6, 5.6       64-65 MiB  2.7, 3.2       59 MiB
    256 MiB   processes  4.4, 5.8       111-112    4.1, 4.6       106-107
    1 GiB     threads    8.0, 8.7       67-70      4.6, 8.1       62
    1 GiB     processes  8.7, 11.1      113-114    8.4, 9.5       109

Threads cost no more CPU (no interpreter to start, no pickles over pipes) and half the memory:
two worker interpreters with their own copies of cryptography, zstandard and the stores pushed
the process tree over the 100 MiB of the issue 14 target. Processes stay available for
measurement (``VELADOR_WORKERS=processes``; ``Pool(threads=False)``): they are plain
interpreters started with ``python -c`` that import only the module holding the worker functions
(vault.objects: blake3, the engine, the stores), not the command line or the parent's
``__main__`` as multiprocessing's forkserver would. Tasks and results are small tuples
(offsets, ids), pickled over a pipe per worker; the environment of a worker process has no
``VELADOR_PASSPHRASE``.

Either way file data never crosses from the main thread to a worker: a worker reads its own
range of the file. The window bounds how many chunks are in flight, which is what keeps memory
flat whatever the input size. Results come back in submission order so files are assembled
without buffering.
"""

from __future__ import annotations

import importlib
import os
import pickle
import select
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

WINDOW_PER_JOB = 4
"""Tasks queued per worker: enough that a worker never waits for the main process."""

_WORKER_ENV_DROP = ("VELADOR_PASSPHRASE",)
_MALLOC_ENV = {
    # Keep 1-4 MiB chunk buffers in the heap instead of a fresh mmap (and its page faults,
    # measured at a third of pyrage's time) per allocation; the heap stays a few MiB.
    "MALLOC_MMAP_THRESHOLD_": str(16 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(8 * 1024 * 1024),
}


THREADS = os.environ.get("VELADOR_WORKERS", "threads") != "processes"
"""Worker threads (the default) or processes; the environment variable is for benchmarks that
measure one against the other (bench/workers.py)."""


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _name(fn: Callable[..., Any]) -> tuple[str, str]:
    return fn.__module__, fn.__qualname__


def _resolve(module: str, qualname: str) -> Callable[..., Any]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


class WorkerDied(RuntimeError):
    """A worker process ended without answering (killed, out of memory)."""


_LEN = struct.Struct("<I")


class _Pipe:
    """Length-prefixed pickles over one pipe end: all a worker needs, and lighter to import than
    multiprocessing.connection (which a worker would pay for in resident memory). Unbuffered, so
    that select() on the descriptor tells the truth about what is waiting."""

    def __init__(self, fd: int, mode: str) -> None:
        self.fd = fd
        self._f: IO[bytes] = os.fdopen(fd, mode, buffering=0)

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_LEN.pack(len(data)) + data)
        while view:
            view = view[self._f.write(view) or 0 :]

    def _exactly(self, n: int) -> bytes:
        parts = []
        while n:
            part = self._f.read(n)
            if not part:
                raise EOFError
            parts.append(part)
            n -= len(part)
        return b"".join(parts)

    def recv(self) -> Any:
        (n,) = _LEN.unpack(self._exactly(_LEN.size))
        return pickle.loads(self._exactly(n))  # noqa: S301 - our own workers, our own pipes

    def close(self) -> None:
        self._f.close()


class _Worker:
    def __init__(self, init: Callable[..., None], initargs: tuple[Any, ...]) -> None:
        import subprocess
        from pathlib import Path

        from .stores import ratelimit
        from .stores.gate import worker_env

        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        env = {k: v for k, v in os.environ.items() if k not in _WORKER_ENV_DROP}
        env.update(_MALLOC_ENV)
        env.update(worker_env())  # the deposit's upload turns (vault/stores/gate.py)
        env.update(ratelimit.worker_env())  # its --limit-upload
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        code = f"from vault.parallel import _serve; _serve({task_r}, {res_w})"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(task_r, res_w),
                env=env,
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            os.close(task_r)
            os.close(res_w)
        self.tasks = _Pipe(task_w, "wb")
        self.results = _Pipe(res_r, "rb")
        self.tasks.send((_name(init), initargs))
        self.queued: deque[int] = deque()
        """Sequence numbers of the tasks sent and not yet answered, oldest first."""

    def submit(self, fn: tuple[str, str], item: Any, seq: int) -> None:
        self.tasks.send((fn, item))
        self.queued.append(seq)

    def receive(self) -> tuple[int, bool, Any]:
        """The next answer of this worker: (sequence number of its task, ok, value)."""
        try:
            ok, value = self.results.recv()
        except (EOFError, OSError) as exc:
            raise WorkerDied(f"a worker process ended unexpectedly ({self.proc.poll()})") from exc
        return self.queued.popleft(), ok, value

    def close(self, kill: bool) -> None:
        try:
            if kill:
                self.proc.kill()
            else:
                self.tasks.send(None)
        except OSError:
            pass
        self.tasks.close()
        self.results.close()
        self.proc.wait()


def _serve(task_fd: int, result_fd: int) -> None:
    """Worker main loop: run the init, then each task, answering (ok, value) in order."""
    tasks = _Pipe(task_fd, "rb")
    results = _Pipe(result_fd, "wb")
    try:
        (init_name, initargs) = tasks.recv()
        _resolve(*init_name)(*initargs)
        fns: dict[tuple[str, str], Callable[[Any], Any]] = {}
        while True:
            msg = tasks.recv()
            if msg is None:
                return
            name, item = msg
            fn = fns.get(name) or fns.setdefault(name, _resolve(*name))
            try:
                out = (True, fn(item))
            except Exception as exc:  # sent back and raised in the main process
                out = (False, exc)
            results.send(out)
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return  # the main process is gone or stopping: nothing left to answer


class _Threads:
    """`jobs` threads of this process, each set up by `init(*initargs)` in its own thread (the
    worker state of vault.objects is per thread). Tasks go through one queue, answers come back
    through another, tagged with their sequence number."""

    def __init__(
        self,
        jobs: int,
        init: Callable[..., None],
        initargs: tuple[Any, ...],
        cleanup: Callable[[], None] | None,
    ) -> None:
        import queue
        import threading

        self.cleanup = cleanup
        self.tasks: queue.SimpleQueue[tuple[int, Callable[[Any], Any], Any] | None] = (
            queue.SimpleQueue()
        )
        self.results: queue.SimpleQueue[tuple[int, bool, Any]] = queue.SimpleQueue()
        self.next_seq = 0
        """Sequence numbers go on across imap calls: an answer to a call its caller abandoned
        is never taken for one of the next call."""
        self.threads = [
            threading.Thread(
                target=self._serve, args=(init, initargs), name=f"velador-worker-{i}", daemon=True
            )
            for i in range(jobs)
        ]
        for t in self.threads:
            t.start()

    def _serve(self, init: Callable[..., None], initargs: tuple[Any, ...]) -> None:
        try:
            init(*initargs)
        except BaseException as exc:  # every task of this thread answers with the error
            failed: BaseException | None = exc
        else:
            failed = None
        try:
            while (msg := self.tasks.get()) is not None:
                seq, fn, item = msg
                if failed is not None:
                    self.results.put((seq, False, failed))
                    continue
                try:
                    self.results.put((seq, True, fn(item)))
                except BaseException as exc:  # raised in the main thread by take()
                    self.results.put((seq, False, exc))
        finally:
            if self.cleanup is not None:
                self.cleanup()  # a thread's open file outlives it unless closed here

    def close(self) -> None:
        # Tasks not started yet are dropped; each thread ends after the task it is running.
        import queue

        try:
            while True:
                self.tasks.get_nowait()
        except queue.Empty:
            pass
        for _ in self.threads:
            self.tasks.put(None)
        for t in self.threads:
            t.join()


class Pool:
    """Run `fn` inline (jobs == 1), or in `jobs` worker threads or processes set up by
    `init(*initargs)` (`threads`, default THREADS: see the module docstring). `cleanup()` runs
    in each worker thread as it ends (a process frees everything as it exits).

    `init` and every `fn` must be module-level functions of a module the workers can import.
    """

    def __init__(
        self,
        jobs: int,
        init: Callable[..., None],
        initargs: tuple[Any, ...],
        threads: bool | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.jobs = jobs
        self._workers: list[_Worker] = []
        self._threads: _Threads | None = None
        if jobs > 1 and (THREADS if threads is None else threads):
            self._threads = _Threads(jobs, init, initargs, cleanup)
        elif jobs > 1:
            try:
                for _ in range(jobs):
                    self._workers.append(_Worker(init, initargs))
            except BaseException:
                self.close(kill=True)
                raise
        else:
            init(*initargs)

    def imap(
        self, fn: Callable[[T], R], items: Iterable[T], window: int | None = None
    ) -> Iterator[R]:
        if self._threads is not None:
            yield from self._imap_threads(fn, items, window or self.jobs * WINDOW_PER_JOB)
            return
        if not self._workers:
            for item in items:
                yield fn(item)
            return
        name = _name(fn)
        window = window or self.jobs * WINDOW_PER_JOB
        done: dict[int, tuple[bool, Any]] = {}
        sent = taken = 0

        def collect(block: bool) -> None:
            # Read every answer already waiting, from whichever worker gave it, so that the
            # counts below reflect work actually left: a worker slowed down (another program on
            # the same cores) then gets fewer tasks, and the other never idles behind it.
            busy = [w for w in self._workers if w.queued]
            ready, _, _ = select.select([w.results.fd for w in busy], [], [], None if block else 0)
            for w in busy:
                if w.results.fd in ready:
                    seq, ok, value = w.receive()
                    done[seq] = (ok, value)

        def take() -> R:
            nonlocal taken
            while taken not in done:
                collect(block=True)
            ok, value = done.pop(taken)
            taken += 1
            if not ok:
                raise value
            return value  # type: ignore[no-any-return]

        for item in items:
            if sent - taken >= window:
                yield take()
            collect(block=False)
            w = min(self._workers, key=lambda w: len(w.queued))
            w.submit(name, item, sent)
            sent += 1
        while taken < sent:
            yield take()

    def _imap_threads(self, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
        pool = self._threads
        assert pool is not None
        done: dict[int, tuple[bool, Any]] = {}
        sent = taken = first = pool.next_seq

        def take() -> R:
            nonlocal taken
            while taken not in done:
                seq, ok, value = pool.results.get()
                if seq >= first:
                    done[seq] = (ok, value)
            ok, value = done.pop(taken)
            taken += 1
            if not ok:
                raise value
            return value  # type: ignore[no-any-return]

        for item in items:
            if sent - taken >= window:
                yield take()
            pool.tasks.put((sent, fn, item))
            sent += 1
            pool.next_seq = sent
        while taken < sent:
            yield take()

    def close(self, kill: bool = False) -> None:
        if self._threads is not None:
            self._threads.close()
            self._threads = None
        for w in self._workers:
            w.close(kill or bool(w.queued))
        self._workers = []

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # After an error, workers may hold tasks nobody will read: stop them at once.
        self.close(kill=exc_type is not None)
