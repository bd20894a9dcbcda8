"""`cost-guard run`: the APScheduler loop. SIGTERM/SIGINT let the running cycle finish."""

from __future__ import annotations

import contextlib
import logging
import signal
from types import FrameType

from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler

from guard.cycle import Guard, run_cycle
from guard.reports import cycle_summary

log = logging.getLogger(__name__)


def run_forever(guard: Guard) -> None:
    """Run a cycle every `scan_interval` until a signal arrives; return after a clean stop."""
    scheduler = BlockingScheduler(timezone=guard.cfg.tz)

    def cycle() -> None:
        try:
            log.info(cycle_summary(run_cycle(guard)))
        except Exception:  # one bad cycle must not kill the daemon; the next one retries
            log.exception("cycle failed")

    scheduler.add_job(
        cycle,
        "interval",
        seconds=int(guard.cfg.scan_interval.total_seconds()),
        id="cycle",
        coalesce=True,  # after a long pause, run once, not once per missed interval
        max_instances=1,
        next_run_time=guard.clock.now(),
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing the running cycle, then exiting", signal.Signals(signum).name
        )
        # wait=True blocks this handler until the running cycle is done; the blocking loop
        # then sees the scheduler stopped and `start()` returns.
        with contextlib.suppress(SchedulerNotRunningError):  # a second signal while waiting
            scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "cost-guard running in %s mode: a cycle every %s over %s",
        guard.cfg.mode, guard.cfg.scan_interval, ", ".join(guard.cfg.regions),
    )  # fmt: skip
    scheduler.start()
    log.info("stopped")
