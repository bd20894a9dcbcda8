"""`cost-guard run`: the APScheduler loop. SIGTERM/SIGINT let the running job finish.

Jobs (rebuilt from the config at every start; no persistent job store):

- `cycle`: scan/evaluate/act/notify every `scan_interval` (with a little jitter, so replicas
  started together drift apart);
- `digest`: queue and send the money digest on the `slack.digest` cron (and once at start, to
  catch up a fire time missed while no daemon ran; the outbox key `digest:<fire time>` makes
  that idempotent);
- `prices`: refresh the AWS Price List cache when `pricing.refresh_every` (or, after a failure,
  `pricing.retry_after`) has passed;
- `retention`: prune history older than `history_retention`, at start and daily.

The cycle skips what these jobs do (`Guard.scheduled_separately`). Every job runs under the
database's cycle lock, so replicas never overlap: the cycle tries it once and skips its turn
when another replica holds it (it will get it at its next tick: the lock is held only while a
cycle runs, and Postgres drops a dead session's advisory lock, so a standby takes over within
one interval of the leader dying); the other jobs wait for it, a bounded while. The jobs share
one worker thread, so in one process they also run one after another.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import InterfaceError, OperationalError

from guard import cron
from guard.config import format_duration
from guard.cycle import Guard, run_cycle, send_digest
from guard.pricing import refresh_due, refresh_prices
from guard.store import instance_id

log = logging.getLogger(__name__)

LOCK_POLL_SECONDS = 1.0
# How long a digest / price / retention job waits for the lock before giving up its turn.
MAX_LOCK_WAIT = timedelta(minutes=10)


class Daemon:
    """The scheduler and its jobs, for one `Guard`. `run()` blocks until `stop()`."""

    def __init__(self, guard: Guard) -> None:
        guard.scheduled_separately = True
        self.guard = guard
        self.interval = guard.cfg.scan_interval
        self.stopping = threading.Event()
        self._running = False  # the scheduler loop has started (and not returned)
        # One worker: a process runs one job at a time; the lock orders replicas.
        self.scheduler = BlockingScheduler(
            timezone=guard.cfg.tz,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._add_jobs()

    # --- jobs ---------------------------------------------------------------------------

    def _add_jobs(self) -> None:
        cfg, now = self.guard.cfg, self.guard.clock.now()
        seconds = self.interval.total_seconds()
        self.scheduler.add_job(
            self._guarded(self.cycle),
            IntervalTrigger(seconds=seconds, jitter=min(seconds * 0.1, 30.0), timezone=cfg.tz),
            id="cycle",
            name="cycle",
            next_run_time=now + timedelta(milliseconds=10),  # after the price job at start
            misfire_grace_time=max(int(seconds), 1),
        )
        self.scheduler.add_job(
            self._guarded(self.digest),
            cron.trigger(cfg.slack.digest, cfg.tz),
            id="digest",
            name="digest",
            next_run_time=now + timedelta(milliseconds=20),  # catch up a missed fire time
            misfire_grace_time=3600,
        )
        if cfg.pricing.source == "api":
            every = min(cfg.pricing.refresh_every, cfg.pricing.retry_after)
            self.scheduler.add_job(
                self._guarded(self.prices),
                IntervalTrigger(seconds=every.total_seconds(), timezone=cfg.tz),
                id="prices",
                name="prices",
                next_run_time=now,  # prices before the first cycle
                misfire_grace_time=3600,
            )
        self.scheduler.add_job(
            self._guarded(self.retention),
            IntervalTrigger(days=1, timezone=cfg.tz),
            id="retention",
            name="retention",
            next_run_time=now + timedelta(milliseconds=30),
            misfire_grace_time=3600,
        )

    def _guarded(self, job: Callable[[], None]) -> Callable[[], None]:
        """Skip a job that was queued before a stop; log a failure instead of dying of it."""

        def run() -> None:
            if self.stopping.is_set():
                return
            try:
                job()
            except (OperationalError, InterfaceError) as exc:
                # The database is unreachable (an outage, a failover): expected, and the next
                # run reconnects by itself. One line per failed run, not a traceback each.
                why = str(exc.orig or exc).strip().splitlines()[0]
                log.error("%s job failed: database unavailable: %s", job.__name__, why)
            except Exception:  # one bad run must not kill the daemon; the next one retries
                log.exception("%s job failed", job.__name__)

        run.__name__ = job.__name__
        return run

    def cycle(self) -> None:
        # Another daemon replica started a cycle less than half an interval ago: leave the
        # turn to it, so N replicas scan once per interval between them, not N times. (Only an
        # optimisation: run_cycle's lock is what keeps cycles from overlapping.) A one-off
        # `cost-guard once` or `inventory --scan` is no replica: it never delays the daemon.
        # Sharded, every replica runs every turn: each scans only its own accounts.
        last = None if self.guard.cfg.sharding.enabled else self.guard.store.last_cycle()
        if last and last.get("daemon") and last.get("instance") != instance_id():
            since = self.guard.clock.now() - datetime.fromisoformat(last["started_at"])
            if timedelta(0) <= since < self.interval / 2:
                log.info(
                    "replica %s ran a cycle %s ago: this one waits for its next turn",
                    last["instance"], format_duration(since),
                )  # fmt: skip
                return
        # run_cycle tries the lock once and skips when another replica is mid-cycle.
        run_cycle(self.guard)

    def digest(self) -> None:
        guard = self.guard
        assert guard.notifier is not None

        def queue_and_send(now: datetime) -> None:
            send_digest(guard, now)  # a no-op when this fire time is already queued
            guard.notifier.deliver()  # type: ignore[union-attr]

        self._locked("digest", queue_and_send)

    def prices(self) -> None:
        guard = self.guard

        def refresh(now: datetime) -> None:
            if not refresh_due(guard.cfg, guard.store, now):
                return
            done = refresh_prices(guard.cfg, guard.aws, guard.store, now)
            if done.ok:
                log.info("refreshed %d prices from the AWS Price List API", done.prices,
                         extra={"event": "prices", "prices": done.prices})  # fmt: skip
            else:
                log.warning("AWS Price List API refresh failed (%s); next try after %s",
                            done.error, guard.cfg.pricing.retry_after)  # fmt: skip

        self._locked("price refresh", refresh)

    def retention(self) -> None:
        guard = self.guard

        def prune(now: datetime) -> None:
            removed = guard.store.prune(now, guard.cfg.history_retention)
            keep = format_duration(guard.cfg.history_retention)
            log.info("retention: removed %d history rows older than %s", removed, keep,
                     extra={"event": "retention", "removed": removed})  # fmt: skip

        self._locked("retention", prune)

    def _locked(self, what: str, work: Callable[[datetime], None]) -> None:
        """Run `work` under the cycle lock, waiting for it (bounded, interrupted by a stop)."""
        waited = 0.0
        while not self.stopping.is_set():
            with self.guard.store.cycle_lock() as held:
                if held:
                    work(self.guard.clock.now())
                    return
            if waited >= MAX_LOCK_WAIT.total_seconds():
                log.warning("%s skipped: the cycle lock stayed busy for %s", what, MAX_LOCK_WAIT)
                return
            self.stopping.wait(LOCK_POLL_SECONDS)
            waited += LOCK_POLL_SECONDS

    # --- run and stop ---------------------------------------------------------------------

    def run(self) -> None:
        """Block until `stop()` (or SIGTERM/SIGINT, once `install_signals()` ran)."""
        cfg = self.guard.cfg
        log.info(
            "cost-guard running in %s mode as %s: a cycle every %s over %s",
            cfg.mode, instance_id(), format_duration(cfg.scan_interval), ", ".join(cfg.regions),
            extra={"event": "start", "instance": instance_id()},
        )  # fmt: skip
        if self.stopping.is_set():  # a signal arrived while starting up
            return
        self._running = True
        try:
            self.scheduler.start()
        finally:
            self._running = False
        log.info("stopped", extra={"event": "stop", "instance": instance_id()})

    def liveness(self) -> tuple[bool, str]:
        """(alive, status) for /healthz: the scheduler runs (or is about to). Says nothing
        about AWS or the database: a cycle that fails on them is a readiness matter
        (/readyz), and restarting the process would not fix them."""
        if self.stopping.is_set():
            return False, "stopping"
        if not self._running:
            return True, "starting"
        return (True, "ok") if self.scheduler.running else (False, "scheduler stopped")

    def stop(self) -> None:
        """Let the running job finish, drop queued ones, then make `run()` return."""
        self.stopping.set()
        # wait=True blocks until the running job is done; the blocking loop then sees the
        # scheduler stopped and `start()` returns.
        with contextlib.suppress(SchedulerNotRunningError):  # a second signal while waiting
            self.scheduler.shutdown(wait=True)

    def install_signals(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self.stopping.is_set():
                log.info("received %s again: still finishing the running job", name)
                return
            log.info("received %s: finishing the running job, then exiting", name,
                     extra={"event": "signal", "signal": name})  # fmt: skip
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)


def run_forever(guard: Guard, daemon: Daemon | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT; return after a clean stop."""
    daemon = daemon or Daemon(guard)
    daemon.install_signals()
    daemon.run()
