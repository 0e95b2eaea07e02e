"""The long-running `velador agent`: one loop in the main thread, for days.

Every round (each `--interval` seconds) runs in the main thread, with a LocalState opened there:
re-send queued check-ins, remind before deadlines, and, while unlocked, look at the watched
folders. (The first version ran rounds in APScheduler's thread pool with a connection opened in
the main thread, and every round after the first died with sqlite3's "objects created in a thread
can only be used in that same thread".) Deposits run in one deposit thread with its own
connection (cli/agent_deposits.py). The main loop waits in select() on a wake pipe and the
control socket, so a signal, a folder change, a finished deposit or `velador agent lock` wakes it
at once.

The key is held like ssh-agent holds one: in memory only, from `velador agent unlock` (or
`--unlock` at start) until the agent locks again, which it does

- after `--lock-after` without a sign of the reporter (an unlock, or a change in a watched folder);
- when the computer was asleep: the wall clock moved more than `--suspend-jump` beyond the
  agent's own monotonic timer between two rounds (Linux's CLOCK_BOOTTIME also counts the sleep);
- on `velador agent lock`.

Locked, it keeps reminding and re-sending and says that it is not depositing. The duress
passphrase opens the same keys (vault/identity.py): nothing here looks at `identity.duress`, so an
agent unlocked under duress deposits, locks and prints exactly as a normal one.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from vault.clock import Clock
from vault.errors import N_, VeladorError
from vault.identity import Identity, unlock_identity
from vault.state import LocalState
from vault.watches import Watch, watches

from .agent_control import ControlServer
from .agent_deposits import DepositWorker, FolderWatcher, Job, Outcome
from .agent_keys import KeyHolder
from .i18n import _, error_text, ngettext
from .timefmt import span


@dataclass(frozen=True)
class AgentOptions:
    interval: float
    notify: bool
    timeout: float
    debounce: float
    """Seconds a watched folder must stay quiet after a change before it is deposited."""
    deposit_every: int
    """Deposit every watched folder at least this often (clock seconds), changed or not."""
    lock_after: int
    suspend_jump: int
    test_rounds: bool = False
    """TEST-ONLY: print a line after every round so a test can follow the rounds."""


def _boottime() -> float:
    clk = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clk) if clk is not None else time.monotonic()


def _describe(exc: Exception) -> str:
    """One line about an error, without a file name (the output may be kept in a log)."""
    if isinstance(exc, VeladorError):
        return error_text(exc)[0]
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or _('system error')}"
    return f"{type(exc).__name__}: {exc}"


def say(text: str) -> None:
    """One line from the agent; `text` is a whole sentence already in the reader's language."""
    click.echo(_("velador agent: %(text)s") % {"text": text}, err=True)


REASONS = {"changed": N_("changed"), "unlocked": N_("unlocked"), "scheduled": N_("scheduled")}
"""Why the agent deposited a case (Job.reason), as its deposit line says it."""


def _templates(exc: VeladorError) -> dict[str, Any]:
    """An error's templates and values for the control socket, so `velador agent unlock` shows
    it in the reader's language (only when every value survives JSON as it is)."""
    params = getattr(exc, "params", {}) or {}
    if not all(isinstance(v, str | int | float) for v in params.values()):
        return {}
    return {"template": exc.template, "hint_template": exc.hint_template, "params": params}


class Agent:
    def __init__(self, home: Path, clock: Clock, opts: AgentOptions) -> None:
        self.home, self.clock, self.opts = home, clock, opts
        self.key = KeyHolder()
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._changes: dict[str, tuple[float, float]] = {}  # case id -> (first, last) monotonic
        self._outcomes: list[Outcome] = []
        self._folders: dict[str, list[Watch]] = {}  # case id -> watches with paths (unlocked)
        self._retry_at: dict[str, int] = {}
        self._catch_up: set[str] = set()
        self._told_locked: set[str] = set()
        self._told_missing: set[int] = set()
        self._last: tuple[int, float, float] | None = None
        self.rounds = 0
        self._retrying: set[tuple[str, str, int]] = set()

    # --- called from other threads: note, then wake the main loop --------------------------
    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def _changed(self, case_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            first = self._changes.get(case_id, (now, now))[0]
            self._changes[case_id] = (first, now)
        self.wake()

    def _deposit_done(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)
        self.wake()

    def _stop(self, signum: int, frame: Any) -> None:
        # Ctrl-C or SIGTERM at any moment ends the agent cleanly, exit 0.
        self.stopping = True
        self.wake()

    # --- the loop ---------------------------------------------------------------------------
    def run(self, identity: Identity | None) -> None:
        from .agent import run_round, show

        self.state = LocalState(self.home)  # opened in the main thread, used only here
        server = ControlServer(self.home)
        self.watcher = FolderWatcher(self._changed)
        self.worker = DepositWorker(self.home, self.clock, self._deposit_done)
        old = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            say(self._banner(unlocked=identity is not None))
            if identity is not None:
                self._unlocked(identity)
            next_round = 0.0
            while not self.stopping:
                try:
                    next_round = self._iteration(server, next_round, run_round, show)
                except Exception as exc:  # the agent must outlive one bad round
                    say(
                        _("this round failed (%(error)s); the next round tries again.")
                        % {"error": _describe(exc)}
                    )
                    next_round = time.monotonic() + self.opts.interval
                    self._sleep_until(server, next_round)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            server.close()
            self.watcher.stop()
            self.worker.stop()
            self.key.lock()
            if self.worker.busy:
                say(_("a deposit was under way; the next start resumes it where it stopped."))
            self.state.db.conn.close()

    def _iteration(
        self, server: ControlServer, next_round: float, run_round: Any, show: Any
    ) -> float:
        if time.monotonic() >= next_round:
            now = self.clock.now()
            self._check_lock(now)
            show(
                self._quieter(run_round(self.state, self.clock, self.opts.timeout)),
                self.opts.notify,
            )
            self._look_at_folders(now)
            self.rounds += 1
            if self.opts.test_rounds:
                say(f"round {self.rounds} done at {now}")
            next_round = time.monotonic() + self.opts.interval
        self._collect()
        self._maybe_deposit()
        self._sleep_until(server, min(next_round, self._next_settle()))
        return next_round

    def _sleep_until(self, server: ControlServer, when: float) -> None:
        """Wait until `when` (monotonic), or less if woken (a signal, a change, a finished
        deposit) or asked something on the control socket."""
        timeout = max(0.0, when - time.monotonic())
        ready, _wr, _ex = select.select([self._wake_r, server], [], [], timeout)
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
        if server in ready and not self.stopping:
            server.serve_one(self.control)

    def _quieter(self, rnd: Any) -> Any:
        """A node down for hours would print "retry" every round: say it once per check-in."""
        kept = []
        for r in rnd.resent:
            key = (r["case_id"], r["node"], r["seq"])
            if r["outcome"] == "retry":
                if key in self._retrying:
                    continue
                self._retrying.add(key)
            else:
                self._retrying.discard(key)
            kept.append(r)
        rnd.resent = kept
        return rnd

    def _banner(self, unlocked: bool) -> str:
        every = span(max(1, int(self.opts.interval)))
        if unlocked:
            text = _(
                "every %(every)s; unlocked: watched folders are deposited when they change; "
                "Ctrl-C to stop. It never checks in for you."
            )
        else:
            text = _(
                "every %(every)s; locked: watched folders are not deposited until 'velador "
                "agent unlock'; Ctrl-C to stop. It never checks in for you."
            )
        return text % {"every": every}

    # --- locking ----------------------------------------------------------------------------
    def _unlocked(self, identity: Identity) -> None:
        self.key.unlock(identity, self.clock.now())
        self._told_locked.clear()
        self._last = None  # the time since the last round is no sign of sleep now
        self._refresh_folders()
        self._catch_up = set(self._folders)  # changes made while locked were not seen
        say(
            _(
                "unlocked. Watched folders are deposited when they change and every "
                "%(every)s. The key stays in memory only; the agent locks again after "
                "%(idle)s idle, when the computer sleeps, or on 'velador agent lock'."
            )
            % {"every": span(self.opts.deposit_every), "idle": span(self.opts.lock_after)}
        )

    def _lock_now(self, why: str) -> None:
        if self.key.lock():
            self.watcher.stop()
            self._folders = {}
            with self._lock:
                self._changes.clear()
            self._catch_up.clear()
            say(why)
            say(
                _(
                    "locked: reminders continue, but watched folders are not deposited until "
                    "you run 'velador agent unlock'."
                )
            )

    def _check_lock(self, now: int) -> None:
        mono, boot = time.monotonic(), _boottime()
        last, self._last = self._last, (now, mono, boot)
        if last is not None:
            apart = int(max(now - last[0], boot - last[2]))
            if apart - (mono - last[1]) > self.opts.suspend_jump:
                self._lock_now(
                    _(
                        "the computer was asleep, or its clock jumped: %(apart)s between two "
                        "rounds; the agent locked itself."
                    )
                    % {"apart": span(apart)}
                )
        if not self.key.locked and now - self.key.active >= self.opts.lock_after:
            self._lock_now(
                _("no activity for %(idle)s; the agent locked itself.")
                % {"idle": span(self.opts.lock_after)}
            )

    def control(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one request from the control socket (cli/agent_control.py)."""
        op = req.get("op")
        if op == "ping":
            return {"ok": True}
        if op == "status":
            return {
                "ok": True,
                "locked": self.key.locked,
                "lock_at": None if self.key.locked else self.key.active + self.opts.lock_after,
                "depositing": self.worker.busy,
                "rounds": self.rounds,
            }
        if op == "lock":
            self._lock_now(_("locked on request ('velador agent lock')."))
            return {"ok": True}
        if op == "unlock":
            passphrase = req.get("passphrase")
            if not isinstance(passphrase, str):
                return {"ok": False, "error": "no passphrase was sent"}
            try:
                identity = unlock_identity(self.home, passphrase)
            except VeladorError as exc:
                return {"ok": False, "error": exc.message, "hint": exc.hint, **_templates(exc)}
            finally:
                del passphrase
            self._unlocked(identity)
            return {"ok": True}
        return {"ok": False, "error": "unknown request"}

    # --- watched folders --------------------------------------------------------------------
    def _refresh_folders(self) -> None:
        ident = self.key.identity
        if ident is None:
            return
        active = {r.case_id for r in self.state.cases() if r.status == "active"}
        try:
            found = watches(self.state, identity=ident)
        except VeladorError as exc:
            say(
                _("the list of watched folders cannot be read: %(error)s")
                % {"error": error_text(exc)[0]}
            )
            return
        by_case: dict[str, list[Watch]] = {}
        for w in found:
            if w.case_id in active and w.path is not None:
                by_case.setdefault(w.case_id, []).append(w)
        self._folders = by_case
        self.watcher.watch([(c, w.path) for c, ws in by_case.items() for w in ws if w.path])

    def _look_at_folders(self, now: int) -> None:
        if not self.key.locked:
            with self._lock:
                if self._changes:
                    self.key.active = now  # the reporter is at work: not idle
            self._refresh_folders()
            return
        # Locked: the paths are sealed, but when each case was last escrowed is not.
        active = {r.case_id: r.name for r in self.state.cases() if r.status == "active"}
        for w in watches(self.state):
            if w.case_id not in active:
                continue
            due = w.escrowed is None or now - w.escrowed >= self.opts.deposit_every
            if due and w.case_id not in self._told_locked:
                self._told_locked.add(w.case_id)
                name = active[w.case_id]
                say(
                    _(
                        "%(case)s: its watched folders are due for a deposit, but the agent is "
                        "locked; run 'velador agent unlock'."
                    )
                    % {"case": name}
                )

    def _settle_at(self, case_id: str) -> float | None:
        with self._lock:
            got = self._changes.get(case_id)
        if got is None:
            return None
        first, last = got
        # A folder that never goes quiet (a log being written) is deposited anyway now and then.
        return min(last + self.opts.debounce, first + max(10 * self.opts.debounce, 300.0))

    def _next_settle(self) -> float:
        """When a changed folder will have settled: the loop wakes then. Never while a deposit
        runs or the key is locked (its end, or the unlock, wakes the loop), nor for a case
        waiting to retry (rounds look at it), or the loop would spin on a time already past."""
        if self.key.locked or self.worker.busy:
            return float("inf")
        now = self.clock.now()
        with self._lock:
            cases = [c for c in self._changes if self._retry_at.get(c, 0) <= now]
        times = [t for c in cases if (t := self._settle_at(c)) is not None]
        return min(times, default=float("inf"))

    def _due(self, now: int) -> tuple[str, str] | None:
        mono = time.monotonic()
        for case_id, ws in self._folders.items():
            if self._retry_at.get(case_id, 0) > now:
                continue
            settle = self._settle_at(case_id)
            if settle is not None and mono >= settle:
                return case_id, "changed"
            if case_id in self._catch_up:
                return case_id, "unlocked"
            if any(w.escrowed is None or now - w.escrowed >= self.opts.deposit_every for w in ws):
                return case_id, "scheduled"
        return None

    def _maybe_deposit(self) -> None:
        ident = self.key.identity
        if ident is None or self.worker.busy or self.stopping:
            return
        now = self.clock.now()
        due = self._due(now)
        if due is None:
            return
        case_id, reason = due
        if reason == "changed":
            self.key.active = max(self.key.active, now)  # the reporter is at work: not idle
        with self._lock:
            self._changes.pop(case_id, None)  # changes from now on ask for the next deposit
        self._catch_up.discard(case_id)
        folders = [(w.watch_id, w.path) for w in self._folders[case_id] if w.path is not None]
        self.worker.submit(Job(case_id, folders, ident, reason))

    def _collect(self) -> None:
        with self._lock:
            done, self._outcomes = self._outcomes, []
        for out in done:
            now = self.clock.now()
            self._retry_at.pop(out.case_id, None)
            for wid in out.missing:
                if wid not in self._told_missing:  # once per agent run, not every round
                    self._told_missing.add(wid)
                    say(
                        _("%(case)s: watched folder #%(id)s is missing; it is not deposited.")
                        % {"case": out.case, "id": wid}
                    )
            if out.missing:
                # Not marked escrowed, so due again at once: look again in a while instead.
                self._retry_at[out.case_id] = now + min(self.opts.deposit_every, 3600)
            if out.busy:
                self._retry_at[out.case_id] = now + 60
                continue
            if out.error is not None:
                retry = min(self.opts.deposit_every, 300)
                self._retry_at[out.case_id] = now + retry
                say(
                    _("%(case)s: the deposit failed (%(error)s); it is tried again in %(retry)s.")
                    % {"case": out.case, "error": out.error, "retry": span(retry)}
                )
                continue
            r = out.result
            if r is None:
                continue
            if r.changed:
                say(
                    ngettext(
                        "%(case)s: %(n)d file changed while being read; it is deposited once it "
                        "stays unchanged.",
                        "%(case)s: %(n)d files changed while being read; they are deposited "
                        "once they stay unchanged.",
                        len(r.changed),
                    )
                    % {"case": out.case, "n": len(r.changed)}
                )
                self._retry_at[out.case_id] = now + 60
                with self._lock:  # deposit again once quiet, even if no event comes
                    m = time.monotonic()
                    self._changes.setdefault(out.case_id, (m, m))
            if not r.unchanged:
                say(
                    ngettext(
                        "%(case)s: deposited snapshot %(seq)s (%(files)d file; %(reason)s).",
                        "%(case)s: deposited snapshot %(seq)s (%(files)d files; %(reason)s).",
                        r.files,
                    )
                    % {
                        "case": out.case,
                        "seq": r.seq,
                        "files": r.files,
                        "reason": _(REASONS.get(out.reason, out.reason)),
                    }
                )
        if done and not self.key.locked:
            self._refresh_folders()
