"""A snapshot is written a chunk of resources at a time (issue 15: memory that does not grow
with the fleet). Chunking must change nothing stored, and a snapshot that fails between
chunks must leave the store as it was."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from guard.model import ActivitySource, Resource
from guard.store import Store
from guard.tables import (
    AccrualRow,
    EvidenceRow,
    EvidenceSnapshotRow,
    ResourceEvent,
    ResourceRow,
    ScanCursorRow,
)
from tests.conftest import emptied
from tests.factories import notebook

EAST, WEST = "us-east-1", "us-west-2"
ACCOUNT = "123456789012"


def _nb(now: datetime, name: str, region: str = EAST, **changes: Any) -> Resource:
    arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:notebook-instance/{name}"
    return notebook(now, name, arn=arn, region=region, **changes)


def _ep(now: datetime, name: str, **changes: Any) -> Resource:
    values: dict[str, Any] = dict(
        arn=f"arn:aws:sagemaker:{EAST}:{ACCOUNT}:endpoint/{name}",
        kind="endpoint",
        instance_type="ml.g5.xlarge",
        usd_per_hour=Decimal("1.41"),
        activity_source=ActivitySource.INVOCATIONS,
        details={"config": {"name": f"{name}-config"}, "variants": [{"name": "AllTraffic"}]},
    )
    values.update(changes)
    return notebook(now, name, **values)


SCANNED_ALL = {
    (ACCOUNT, EAST, "notebook"),
    (ACCOUNT, EAST, "endpoint"),
    (ACCOUNT, WEST, "notebook"),
}
SCANNED_EAST = {(ACCOUNT, EAST, "notebook"), (ACCOUNT, EAST, "endpoint")}  # west failed


def _snapshots(t0: datetime) -> list[tuple[list[Resource], set[tuple[str, str, str]], datetime]]:
    """Four snapshots exercising every path: new rows, unchanged rows (stamped only), changed
    rows, unknown evidence, gone, missed (a failed listing), back from gone, and a second
    snapshot at the same instant (a clock standing still)."""
    t1, t2 = t0 + timedelta(minutes=5), t0 + timedelta(minutes=10)
    first = [_nb(t0, f"nb{i}") for i in range(6)] + [_ep(t0, "ep0"), _ep(t0, "ep1")]
    first += [_nb(t0, "west0", WEST), _nb(t0, "west1", WEST)]
    second = [
        _nb(t1, "nb0", status="Stopped", running=False, usd_per_hour=None),
        # nb1 not listed: gone (its listing completed)
        _nb(t1, "nb2", last_activity=None, activity_source=ActivitySource.UNKNOWN,
            evidence_error="logs unavailable"),
        _nb(t1, "nb3", tags={"owner": "grace@example.com"}),
        _nb(t1, "nb4"),
        _nb(t1, "nb5"),
        _ep(t1, "ep0", usd_per_hour=Decimal("2.82"), instance_count=2),
        _ep(t1, "ep1"),
        _nb(t1, "nb6"),  # new
        # west0, west1 not listed: the west listing failed, so they are missed, not gone
    ]  # fmt: skip
    third = [r for r in second if r.name != "ep1"] + [_nb(t2, "nb1")]  # nb1 back, ep1 gone
    fourth = [r for r in third if r.name not in ("nb5", "nb6")]  # same instant: two more gone
    return [
        (first, SCANNED_ALL, t0),
        (second, SCANNED_EAST, t1),
        (third, SCANNED_ALL, t2),
        (fourth, SCANNED_EAST, t2),
    ]


def _dump(store: Store) -> dict[str, Any]:
    """Every row a snapshot writes, without generated ids, in a stable order."""

    def rows(model: Any, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        table = model.__table__
        columns = [c for c in table.c if c.name not in skip]
        with store.session() as s:
            found = [dict(row._mapping) for row in s.execute(select(*columns))]
        return sorted(found, key=repr)

    return {
        "resources": rows(ResourceRow),
        "events": rows(ResourceEvent, ("id",)),
        "accruals": rows(AccrualRow, ("id",)),
        "evidence": rows(EvidenceRow, ("id",)),
        "evidence_snapshots": rows(EvidenceSnapshotRow),
        "cursors": rows(ScanCursorRow, ("id",)),
    }


def _run(db_url: str, chunk: int, t0: datetime) -> Iterator[dict[str, Any]]:
    store = Store(db_url)
    store.snapshot_chunk = chunk
    try:
        store.snooze(_nb(t0, "nb4").arn, t0 + timedelta(hours=4), "demo", "ada", t0)
        for resources, scanned, now in _snapshots(t0):
            store.save_snapshot(resources, scanned, now)
            yield _dump(store)
    finally:
        store.close()


def test_a_snapshot_in_chunks_stores_what_one_batch_stores(db_url: str, clock) -> None:
    t0 = clock.now()
    batched = list(_run(db_url, 10_000, t0))
    chunked = list(_run(emptied(db_url), 3, t0))
    assert chunked == batched
    last = batched[-1]
    # the scenario did what it says: gone, missed, back, changes and evidence all written
    gone = {row["name"] for row in last["resources"] if row["gone_at"] is not None}
    # nb1 came back; west0/1, missed while their listing failed, went once it completed
    assert gone == {"ep1", "nb5", "nb6", "west0", "west1"}
    missed = {row["at"]: row["missed"]["arns"] for row in last["evidence_snapshots"]}
    assert [a.rsplit("/", 1)[1] for a in missed[t0 + timedelta(minutes=5)]] == ["west0", "west1"]
    gone_events = sorted(
        e["arn"].rsplit("/", 1)[1] for e in last["events"] if e["status"] == "Gone"
    )
    assert gone_events == ["ep1", "nb1", "nb5", "nb6", "west0", "west1"]
    assert len(last["evidence"]) > len(batched[0]["evidence"]) == 10
    assert any(e["snoozed_until"] for e in last["evidence"])
    assert {row["arn"] for row in last["accruals"]} >= {row["arn"] for row in last["resources"]} - {
        _nb(t0, "west0", WEST).arn,
        _nb(t0, "west1", WEST).arn,
    }


def test_a_snapshot_failing_between_chunks_leaves_the_store_as_it_was(db_url: str, clock) -> None:
    """A cycle that dies mid-snapshot (here: a resource that cannot be stored, met after two
    chunks were written) changes nothing; the next snapshot stores what it would have."""
    t0 = clock.now()
    t1, t2 = t0 + timedelta(minutes=5), t0 + timedelta(minutes=10)

    class Broken(Mapping[str, str]):
        """Tags that cannot be read: the snapshot fails on this resource, mid-chunk."""

        def __getitem__(self, key: str) -> str:
            raise RuntimeError("cannot be stored")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("cannot be stored")

        def __len__(self) -> int:
            return 1

    scanned = {(ACCOUNT, EAST, "notebook")}
    failing = [_nb(t1, f"nb{i}", status="Stopping") for i in range(7)]
    failing += [_nb(t1, "bad", tags=Broken()), _nb(t1, "nb9")]  # in the third chunk of 3

    store = Store(db_url)
    store.snapshot_chunk = 3
    store.save_snapshot([_nb(t0, f"nb{i}") for i in range(9)], scanned, t0)
    before = _dump(store)
    with pytest.raises(RuntimeError, match="cannot be stored"):
        store.save_snapshot(failing, scanned, t1)
    assert _dump(store) == before
    store.save_snapshot([_nb(t2, f"nb{i}") for i in range(5)], scanned, t2)
    after_failure = _dump(store)
    store.close()

    clean = Store(emptied(db_url))
    clean.save_snapshot([_nb(t0, f"nb{i}") for i in range(9)], scanned, t0)
    clean.save_snapshot([_nb(t2, f"nb{i}") for i in range(5)], scanned, t2)
    assert after_failure == _dump(clean)
    clean.close()
