"""Running jobs between full listings: only what changed is listed and merged into the running
set the previous listing left (issue 15). The simulator over HTTP, a manual clock, call counts
as AWS saw them; a fleet of 150 running training jobs takes two pages to list in full and one
to list what changed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

TRAINING, PROCESSING, TRANSFORM = "training_job", "processing_job", "transform_job"
LIST_TRAINING = "sagemaker:ListTrainingJobs"
FLEET = 150  # two pages of a full listing


def make_guard(clock: ManualClock, db_url: str) -> Guard:
    return guard_for(clock, db_url, [], kinds=[TRAINING, PROCESSING, TRANSFORM])


def calls(report: dict[str, Any], operation: str) -> int:
    return int(report["api_calls"].get(operation, 0))


def running(guard: Guard, kind: str) -> set[str]:
    return {r.name for r in guard.store.resources() if r.kind == kind and r.running}


def status(guard: Guard, kind: str, name: str) -> tuple[str, bool, bool]:
    """(status, running, gone) as the store has the job."""
    res = guard.store.resource_by_name(kind, name)
    assert res is not None
    gone = name not in {r.name for r in guard.store.resources() if r.kind == kind}
    return res.status, res.running, gone


def seed(sim: Simulator, clock: ManualClock) -> set[str]:
    names = set(sim.add_job_fleet(FLEET, kind=TRAINING, prefix="fleet"))
    sim.add_training_job("ending", started_at=clock.now() - timedelta(hours=1))
    sim.add_processing_job("proc", started_at=clock.now() - timedelta(hours=1))
    # Seeded a while before the first cycle, as a fleet is: a listing of changes starts
    # `OVERLAP` (10 min) before the previous listing, and would list them all again.
    clock.advance(timedelta(minutes=15))
    return names | {"ending"}


def test_between_full_listings_only_the_changes_are_listed_and_merged(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    names = seed(sim, clock)
    guard = make_guard(clock, db_url)
    first = run_cycle(guard)
    assert calls(first, LIST_TRAINING) == 2  # the full InProgress listing, two pages
    assert running(guard, TRAINING) == names

    # Between two cycles: one job ends, one starts (of each kind that matters).
    clock.advance(timedelta(minutes=5))
    sim.finish_job(TRAINING, "ending")
    sim.finish_job(PROCESSING, "proc", "Failed")
    sim.add_training_job("started", started_at=clock.now() - timedelta(minutes=2))
    sim.add_transform_job("transform", started_at=clock.now() - timedelta(minutes=1))
    second = run_cycle(guard)
    assert calls(second, LIST_TRAINING) == 1  # what changed: one page
    assert calls(second, "sagemaker:ListProcessingJobs") == 1
    assert calls(second, "sagemaker:ListTransformJobs") == 1
    assert running(guard, TRAINING) == names - {"ending"} | {"started"}
    assert status(guard, TRAINING, "ending")[:2] == ("Completed", False)
    assert status(guard, PROCESSING, "proc")[:2] == ("Failed", False)
    assert running(guard, TRANSFORM) == {"transform"}
    assert second["errors"] == []

    # Nothing changed: still one page each, and nothing drops out.
    clock.advance(timedelta(minutes=5))
    third = run_cycle(guard)
    assert calls(third, LIST_TRAINING) == 1
    assert running(guard, TRAINING) == names - {"ending"} | {"started"}
    assert running(guard, TRANSFORM) == {"transform"}
    assert status(guard, TRAINING, "ending")[2]  # an ended job is gone the cycle after


def test_a_failed_listing_of_changes_marks_nothing_ended_and_the_next_lists_in_full(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    names = seed(sim, clock)
    guard = make_guard(clock, db_url)
    run_cycle(guard)
    clock.advance(timedelta(minutes=5))
    sim.finish_job(TRAINING, "ending")
    fault = sim.inject("denied", LIST_TRAINING)
    failed = run_cycle(guard)
    assert any("training_job: scan failed" in e for e in failed["errors"])
    # not judged: what ran is still running as far as the store knows, nothing is gone
    assert running(guard, TRAINING) == names
    assert status(guard, TRAINING, "ending") == ("InProgress", True, False)

    fault.off()
    clock.advance(timedelta(minutes=5))
    after = run_cycle(guard)
    assert calls(after, LIST_TRAINING) == 2  # nothing trustworthy kept: the full listing
    assert running(guard, TRAINING) == names - {"ending"}
    assert status(guard, TRAINING, "ending")[:2] == ("Completed", False)
    clock.advance(timedelta(minutes=5))
    assert calls(run_cycle(guard), LIST_TRAINING) == 1  # and changes again after it


def test_a_failure_on_the_second_page_of_a_full_listing_keeps_nothing(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    names = seed(sim, clock)
    guard = make_guard(clock, db_url)
    sim.inject("5xx", LIST_TRAINING, after=LIST_TRAINING, times=20)  # every retry of page 2
    failed = run_cycle(guard)
    assert any("training_job: scan failed" in e for e in failed["errors"])
    assert running(guard, TRAINING) == set()  # nothing judged from half a listing
    sim.heal()
    clock.advance(timedelta(minutes=5))
    after = run_cycle(guard)
    assert calls(after, LIST_TRAINING) == 2  # full: the half listing was not kept
    assert running(guard, TRAINING) == names


def test_the_full_listing_is_made_again_hourly_and_by_a_new_process(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    names = seed(sim, clock)
    guard = make_guard(clock, db_url)
    assert calls(run_cycle(guard), LIST_TRAINING) == 2
    clock.advance(timedelta(minutes=30))
    assert calls(run_cycle(guard), LIST_TRAINING) == 1
    clock.advance(timedelta(minutes=29))
    assert calls(run_cycle(guard), LIST_TRAINING) == 1
    clock.advance(timedelta(minutes=1))  # an hour after the full listing
    assert calls(run_cycle(guard), LIST_TRAINING) == 2
    clock.advance(timedelta(minutes=5))
    assert calls(run_cycle(guard), LIST_TRAINING) == 1
    # A new process (a new guard on the same database) keeps nothing: it lists in full.
    clock.advance(timedelta(minutes=5))
    other = make_guard(clock, db_url)
    assert calls(run_cycle(other), LIST_TRAINING) == 2
    assert running(other, TRAINING) == names
    # A clock that went back is not trusted either.
    clock.advance(timedelta(minutes=-20))
    assert calls(run_cycle(other), LIST_TRAINING) == 2


def test_the_simulator_lists_changes_strictly_after_and_moves_them_on_status_changes(
    sim: Simulator, clock: ManualClock
) -> None:
    client = sim.client("sagemaker")

    def changed(after: Any) -> list[tuple[str, str]]:
        found = client.list_training_jobs(LastModifiedTimeAfter=after)["TrainingJobSummaries"]
        return sorted((j["TrainingJobName"], j["TrainingJobStatus"]) for j in found)

    seeded_at = clock.now()
    sim.add_training_job("a", started_at=seeded_at - timedelta(hours=3))
    sim.add_training_job("b", started_at=seeded_at - timedelta(hours=3))
    # seeded now (started earlier): modified now, and "after" is strict
    assert changed(seeded_at - timedelta(seconds=1)) == [("a", "InProgress"), ("b", "InProgress")]
    assert changed(seeded_at) == []
    clock.advance(timedelta(minutes=1))
    sim.finish_job(TRAINING, "a")
    assert changed(seeded_at) == [("a", "Completed")]
    clock.advance(timedelta(minutes=1))
    client.stop_training_job(TrainingJobName="b")
    assert changed(seeded_at + timedelta(minutes=1)) == [("b", "Stopping")]
    clock.advance(timedelta(minutes=1))
    sim.settle_jobs()
    found = client.list_training_jobs(LastModifiedTimeAfter=clock.now() - timedelta(seconds=1))
    (summary,) = found["TrainingJobSummaries"]
    assert (summary["TrainingJobName"], summary["TrainingJobStatus"]) == ("b", "Stopped")
    assert summary["LastModifiedTime"] == clock.now()
    # the other time filters, as botocore's model has them, are strict too
    assert client.list_training_jobs(LastModifiedTimeBefore=seeded_at)["TrainingJobSummaries"] == []
    created = client.list_training_jobs(CreationTimeAfter=seeded_at - timedelta(hours=3))
    assert created["TrainingJobSummaries"] == []
