"""APScheduler 3.x wiring of the engine (docs/protocol.md §5.3).

Jobs:
    wake     one DateTrigger job at the earliest `next_wake` of all cases (exact time); after it
             runs, it re-arms itself at the new earliest time. Commits that bring a case's
             wake-up earlier move it (NodeService.on_change).
    sweep    IntervalTrigger every `tick` seconds: the safety net (and what notices a test clock
             that jumps).
    outbox   IntervalTrigger every min(tick, 5) s, plus an immediate run after commits that
             queued deliveries.
    prune    every 10 minutes: expired request nonces.
    drills   every max(tick, 60 s): start the drills the case policies schedule.

Times for the case engine come from the injected clock; APScheduler only needs "how long from
now", so a wake-up at case time T is scheduled at real time now_real + (T - clock.now()).

Pre-release peer syncs run on the `PeerSync` pool (escrow_node/sweep.py), never under the sweep
lock: a sweep only queues them, so a peer that drips or stalls cannot hold up any other case.

A job that fires while its previous run is still going is skipped (max_instances=1, coalesce):
that is the intent, as the running pass picks up the new work. APScheduler logs each such skip
as a WARNING ("maximum number of running instances reached"), which buried real warnings in
busy logs (issue 12 §10): `_QuietSkips` drops that one message, and the skips are counted in
`skipped_runs` instead.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime, timedelta, timezone

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from vault.clock import SystemClock

from .auth import prune_nonces
from .drills import start_scheduled
from .outbox import Outbox
from .service import NodeService
from .sweep import PeerSync, sweep

log = logging.getLogger("velador.node.scheduler")
SKIP_MESSAGE = "maximum number of running instances reached"
DRILL_TICK = 60.0
"""Seconds between looks for scheduled drills (at least; the sweep's tick when longer)."""


class _QuietSkips(logging.Filter):
    """Drop APScheduler's warning for a run skipped because the previous one is still going."""

    def filter(self, record: logging.LogRecord) -> bool:
        return SKIP_MESSAGE not in str(record.msg)


_quiet = _QuietSkips()


class EngineScheduler:
    def __init__(self, svc: NodeService, outbox: Outbox, tick: float) -> None:
        self.svc = svc
        self.outbox = outbox
        self.tick = tick
        self._wake_at: int | None = None
        self._wake_job: str | None = None
        self._wake_n = 0
        self._lock = threading.Lock()
        self._sweep_lock = threading.Lock()
        self.sched = BackgroundScheduler(
            timezone=timezone.utc,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        logger = logging.getLogger("apscheduler.scheduler")
        if _quiet not in logger.filters:
            logger.addFilter(_quiet)
        self.skipped_runs = 0
        self.sched.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        self.syncer = PeerSync(svc)

    def start(self) -> None:
        self.sched.add_job(self.run_sweep, IntervalTrigger(seconds=self.tick), id="sweep")
        self.sched.add_job(
            self.run_outbox, IntervalTrigger(seconds=max(0.1, min(self.tick, 5.0))), id="outbox"
        )
        self.sched.add_job(self.run_prune, IntervalTrigger(seconds=600), id="prune")
        self.sched.add_job(
            self.run_drills, IntervalTrigger(seconds=max(self.tick, DRILL_TICK)), id="drills"
        )
        self.svc.on_change = self.on_change
        self.sched.start()
        self.rearm()
        self.kick_outbox()

    def shutdown(self, deadline: float | None = None) -> int:
        """Stop the jobs; returns how many peer syncs still run at `deadline` (monotonic).

        The jobs themselves only touch the database (a sweep queues its syncs), so waiting for
        them is short; the syncs and deliveries, which wait on other machines, are waited for
        until the deadline only (server.py, "Stopping")."""
        self.svc.on_change = lambda wake, queued: None
        self.outbox.stop()
        self.sched.shutdown(wait=True)
        return self.syncer.close(deadline)

    def _skipped(self, event: JobSubmissionEvent) -> None:
        self.skipped_runs += 1
        log.debug("job %s skipped: its previous run is still going", event.job_id)

    # --- jobs ---------------------------------------------------------------------------------

    def run_sweep(self) -> None:
        after: int | None = None
        with self._sweep_lock:
            try:
                result = sweep(self.svc, syncer=self.syncer)
                if result.advanced:
                    log.info("sweep advanced %d case(s) in %.3f s", result.advanced, result.seconds)
                if result.failed or self.syncer.busy():
                    # Cases being synced keep their past wake-up until the sync commits (which
                    # re-arms through on_change); re-arming at them now would spin.
                    after = result.now
            except Exception:  # pragma: no cover - a job must never die silently
                log.exception("sweep failed")
                after = self.svc.clock.now()
        self.rearm(after)

    def run_outbox(self) -> None:
        try:
            self.outbox.deliver_due()
        except Exception:  # pragma: no cover
            log.exception("outbox delivery failed")

    def run_drills(self) -> None:
        """Start the drills the policies schedule (drills.start_scheduled, protocol.md §11.1)."""
        try:
            start_scheduled(self.svc)
        except Exception:  # pragma: no cover - a job must never die silently
            log.exception("scheduled drills failed")

    def run_prune(self) -> None:
        with self.svc.store.tx() as conn:
            prune_nonces(conn, self.svc.clock.now())

    # --- exact-time job -----------------------------------------------------------------------

    def _schedule(self, when: int) -> None:
        # With the system clock use the sub-second time, so a job for second T fires at T.0
        # and not up to a second later.
        now = time.time() if isinstance(self.svc.clock, SystemClock) else self.svc.clock.now()
        delay = max(0.0, when - now)
        run_at = datetime.now(timezone.utc) + timedelta(seconds=delay)
        # A fresh job id each time: APScheduler removes a fired date job from the scheduler
        # thread, which could otherwise race with the job re-arming itself under the same id.
        self._wake_n += 1
        job_id = f"wake-{self._wake_n}"
        self.sched.add_job(self.run_sweep, DateTrigger(run_date=run_at), id=job_id)
        self._drop_wake_job()
        self._wake_job = job_id
        self._wake_at = when

    def _drop_wake_job(self) -> None:
        if self._wake_job is not None:
            with contextlib.suppress(JobLookupError):
                self.sched.remove_job(self._wake_job)
            self._wake_job = None

    def rearm(self, after: int | None = None) -> None:
        """Schedule the exact-time job at the earliest wake-up (later than `after`, if given).

        After a sweep that could not advance some cases, their wake-ups are still in the past;
        re-arming at them would run the sweep again at once, in a busy loop. `after` (the time
        that sweep ran at) leaves them to the periodic sweep, which retries every `tick`.
        """
        with self.svc.store.read() as conn:
            wake = conn.execute(
                "SELECT min(next_wake) FROM cases WHERE next_wake IS NOT NULL AND next_wake > ?",
                (-(2**62) if after is None else after,),
            ).fetchone()[0]
        with self._lock:
            if wake is None:
                self._wake_at = None
                self._drop_wake_job()
                return
            self._schedule(wake)

    def on_change(self, wake: int | None, queued: bool) -> None:
        if wake is not None:
            with self._lock:
                if self._wake_at is None or wake < self._wake_at:
                    self._schedule(wake)
        if queued:
            self.kick_outbox()

    def kick_outbox(self) -> None:
        self.sched.add_job(self.run_outbox, id="outbox-now", replace_existing=True)
