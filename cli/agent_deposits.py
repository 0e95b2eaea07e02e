"""The agent's deposits of watched folders: one deposit thread, and the folder watcher.

One thread makes every deposit, one at a time, so the agent never runs two deposits at once;
reminders and queued check-ins go on in the main thread while a large folder uploads. The thread
opens its own LocalState (an SQLite connection belongs to the thread that opened it) and records
when each folder was escrowed (vault/watches.py).

The watcher (the watchdog library: inotify on Linux, FSEvents on macOS) only notes *which case*
saw a change and when, and wakes the main loop; the main loop decides when a change has settled.
Events that are not changes (a file opened, closed without writing, or its access time moved,
as the deposit itself reads it) are ignored, or every deposit would start the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click

from vault.clock import Clock
from vault.deposit import DepositResult
from vault.deposit import deposit as do_deposit
from vault.errors import VeladorError
from vault.identity import Identity
from vault.state import LocalState
from vault.watches import mark_escrowed

from .context import home_upload_limit
from .i18n import _, error_text

_IGNORED_EVENTS = {"opened", "closed_no_write", "attrib"}
"""Not changes of content: the deposit's own reading opens files, closes them unwritten and
moves their access time (attrib); a mode change alone waits for the scheduled deposit."""
DEPOSIT_LOCK = "deposit.lock"


@contextlib.contextmanager
def deposit_lock(home: Path, wait: bool) -> Iterator[bool]:
    """The home's deposit lock (flock on `deposit.lock`): one deposit at a time per home, the
    agent's or a `velador deposit`. Yields False when `wait` is False and another holds it."""
    fd = os.open(home / DEPOSIT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def one_deposit_at_a_time(home: Path) -> Iterator[None]:
    """For `velador deposit`: wait (saying so) while the agent deposits into this home."""
    with deposit_lock(home, wait=False) as held:
        if held:
            yield
            return
    click.echo(_("velador: waiting for the agent's deposit to finish..."), err=True)
    with deposit_lock(home, wait=True):
        yield


@dataclass
class Job:
    case_id: str
    folders: list[tuple[int, Path]]
    """(watch id, path) of every folder of the case."""
    identity: Identity
    reason: str


@dataclass
class Outcome:
    case_id: str
    case: str
    reason: str
    started: int
    result: DepositResult | None = None
    error: str | None = None
    missing: list[int] = field(default_factory=list)
    """Watch ids whose folder was not there (deleted, or on a disk not mounted)."""
    busy: bool = False
    """Another command (`velador deposit`) held the home's deposit lock: nothing was done."""


class DepositWorker:
    """A thread that runs one deposit at a time and reports each outcome through `done`."""

    def __init__(self, home: Path, clock: Clock, done: Callable[[Outcome], None]) -> None:
        self.home, self.clock, self._done = home, clock, done
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._run, name="velador-agent-deposit", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def submit(self, job: Job) -> None:
        if self._busy.is_set():
            raise RuntimeError("a deposit is already running")
        self._busy.set()
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        state = LocalState(self.home)  # opened in this thread, used only here
        try:
            while (job := self._jobs.get()) is not None:
                try:
                    outcome = self._deposit(state, job)
                except Exception as exc:  # the thread must outlive one failed deposit
                    outcome = Outcome(job.case_id, job.case_id, job.reason, self.clock.now())
                    outcome.error = type(exc).__name__
                finally:
                    job.identity = None  # type: ignore[assignment]  # no reference kept here
                self._done(outcome)  # before clearing busy: the outcome is seen first
                self._busy.clear()
        finally:
            state.db.conn.close()

    def _deposit(self, state: LocalState, job: Job) -> Outcome:
        started = self.clock.now()
        try:
            rec = state.case(job.case_id)
        except VeladorError as exc:
            return Outcome(job.case_id, job.case_id, job.reason, started, error=error_text(exc)[0])
        out = Outcome(job.case_id, rec.name, job.reason, started)
        present = [(wid, p) for wid, p in job.folders if p.exists()]
        out.missing = [wid for wid, p in job.folders if not p.exists()]
        if not present:
            return out
        try:
            # The home's `[network] limit_upload`, as `velador deposit` without the option: the
            # agent shares the reporter's slow uplink too (issue 12, "ongoing work").
            kib_s = home_upload_limit(self.home)
            with deposit_lock(self.home, wait=False) as held:
                if not held:
                    out.busy = True
                    return out
                out.result = do_deposit(
                    state,
                    job.identity,
                    rec,
                    [p for _, p in present],
                    self.clock,
                    jobs=1,
                    limit_upload=kib_s * 1024 if kib_s else None,
                )
        except VeladorError as exc:
            # The kind of failure and what to do, never its text: some deposit errors quote a
            # file name, and the agent's output may end up in a log on a seized laptop.
            out.error = _("%(kind)s; 'velador deposit' run by hand shows the details") % {
                "kind": type(exc).__name__
            }
            return out
        except OSError as exc:
            # No file name: the agent's output may end up in a log file on a seized laptop.
            out.error = f"{type(exc).__name__}: {exc.strerror or _('input/output error')}"
            return out
        if not out.result.changed:
            mark_escrowed(state, [wid for wid, _ in present], started)
        return out


class FolderWatcher:
    """watchdog observers for the watched folders of every case; `changed(case_id)` on events."""

    def __init__(self, changed: Callable[[str], None]) -> None:
        self._changed = changed
        self._observer: object | None = None
        self.folders: dict[tuple[str, Path], None] = {}

    def watch(self, folders: list[tuple[str, Path]]) -> None:
        """Watch exactly these (case id, path) pairs; restarts the observer when they change."""
        wanted = dict.fromkeys(folders)
        if wanted == self.folders and self._observer is not None:
            return
        self.stop()
        self.folders = wanted
        if not wanted:
            return
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        changed = self._changed

        class Handler(FileSystemEventHandler):
            def __init__(self, case_id: str, only: Path | None) -> None:
                self.case_id, self.only = case_id, only

            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in _IGNORED_EVENTS:
                    return
                if self.only is not None:
                    names = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
                    if str(self.only) not in names:
                        return
                changed(self.case_id)

        observer = Observer()
        for case_id, path in wanted:
            try:
                if path.is_dir():
                    observer.schedule(Handler(case_id, None), str(path), recursive=True)
                elif path.parent.is_dir():  # a single file: its folder, filtered to the file
                    observer.schedule(Handler(case_id, path), str(path.parent), recursive=False)
            except OSError:
                continue  # gone or unreadable: the scheduled deposit reports it
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        self.folders = {}
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join(10)  # type: ignore[attr-defined]
