"""Reconciling with the bill: a CUR 2.0 Parquet export in the simulator's S3, matched to the
resources by resource id, set against the guard's own estimate per resource and day."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from rich.table import Table

from guard import billing
from guard.cycle import run_cycle
from guard.model import ManualClock
from guard.reports import billing_differences, inventory_for, inventory_table
from guard.sim import Simulator
from guard.sim.cur import LineItem, put_cur_export
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")

BUCKET, PREFIX = "billing-exports", "cur2/sagemaker"
BILLING = {"bucket": BUCKET, "prefix": PREFIX, "threshold": 0.05}


def test_inventory_json_carries_billed_usd_per_resource_and_flags_differences(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    start = clock.now()  # Monday 2026-11-23 09:00 UTC
    arn_a = sim.add_notebook("nb-a", "ml.m5.xlarge", in_service_since=start)
    arn_b = sim.add_notebook("nb-b", "ml.m5.xlarge", in_service_since=start)
    guard = guard_for(clock, db_url, [], pricing={"source": "bundled"}, billing=BILLING)
    for _ in range(25):  # 2 h of 5-minute cycles: no export yet (reported, estimate stays)
        report = run_cycle(guard)
        clock.advance(timedelta(minutes=5))
    assert any("billing export" in e for e in report["errors"])

    hour = timedelta(hours=1)
    items = [LineItem(arn_a, start + i * hour, Decimal("0.23")) for i in range(2)]
    # nb-b: the bill says more than the estimate (an EBS line, say), and its id in lower case
    items += [LineItem(arn_b.lower(), start + i * hour, Decimal("0.40")) for i in range(2)]
    items.append(LineItem(arn_a, start, Decimal("9.99"), product_code="AmazonEC2"))  # not ours
    put_cur_export(sim.client("s3"), BUCKET, PREFIX, items)

    clock.advance(timedelta(days=1))  # the next day's first cycle reads it
    report = run_cycle(guard)
    assert not any("billing export" in e for e in report["errors"])
    listed = {i["name"]: i for i in inventory_for(guard.store, guard.cfg, clock.now())}
    a, b = listed["nb-a"], listed["nb-b"]
    assert a["billed_usd"] == "0.46" and b["billed_usd"] == "0.80"
    [day_a] = a["billing"]
    assert day_a["day"] == start.date().isoformat() and not day_a["flagged"]
    assert abs(Decimal(day_a["estimated_usd"]) - Decimal("0.46")) <= Decimal("0.01")
    [day_b] = b["billing"]
    assert day_b["flagged"] and day_b["billed_usd"] == "0.80"

    # The table people read: a billed column, `!` where a day is off, and what `!` means.
    rows = list(listed.values())
    text = _rendered(inventory_table(rows, guard.cfg, clock.now()))
    assert "billed $" in text and "0.80 !" in text and "0.46 !" not in text
    assert "1.26" in text  # the billed total
    lines = billing_differences(rows, guard.cfg)
    assert lines[0] == "estimate and bill differ by more than 5%:"
    [line] = lines[1:]
    assert line.startswith(
        f"notebook/nb-b {start.date().isoformat()}: estimated $0.46, billed $0.80"
    )
    assert line.endswith("(-42% of the bill)")
    guard.store.close()


def _rendered(table: Table) -> str:
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_without_an_export_the_inventory_has_no_billed_column(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    sim.add_notebook("nb-a", "ml.m5.xlarge", in_service_since=clock.now())
    guard = guard_for(clock, fresh_sqlite_url, [], pricing={"source": "bundled"})
    run_cycle(guard)
    items = inventory_for(guard.store, guard.cfg, clock.now())
    assert "billed" not in _rendered(inventory_table(items, guard.cfg, clock.now()))
    assert billing_differences(items, guard.cfg) == []
    guard.store.close()


def test_iam_policy_reads_the_billing_export_only_under_its_prefix(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    import fnmatch

    from guard.iam import policy

    arn = sim.add_notebook("nb", "ml.m5.xlarge", in_service_since=clock.now())
    put_cur_export(sim.client("s3"), BUCKET, PREFIX, [LineItem(arn, clock.now(), Decimal("1"))])
    guard = guard_for(clock, fresh_sqlite_url, [], pricing={"source": "bundled"}, billing=BILLING)
    run_cycle(guard)
    [item] = inventory_for(guard.store, guard.cfg, clock.now())
    assert item["billed_usd"] == "1.00"  # the export was listed and read
    keys = [o["Key"] for o in sim.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    statements = {st["Sid"]: st for st in policy(guard.cfg)["Statement"]}
    listing, reading = statements["ListBillingExport"], statements["ReadBillingExport"]
    assert (listing["Action"], listing["Resource"]) == ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [f"{PREFIX}*"]
    assert reading["Action"] == "s3:GetObject"
    for key in keys:  # every object the guard read is under the granted resource
        assert fnmatch.fnmatchcase(f"arn:aws:s3:::{BUCKET}/{key}", reading["Resource"]), key
    assert not fnmatch.fnmatchcase(f"arn:aws:s3:::{BUCKET}/other/x.parquet", reading["Resource"])
    no_billing = guard_for(clock, fresh_sqlite_url, [], pricing={"source": "bundled"})
    assert "s3:GetObject" not in str(policy(no_billing.cfg))
    guard.store.close()
    no_billing.store.close()


def test_no_export_configured_means_no_billed_field(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    sim.add_notebook("nb", in_service_since=clock.now())
    guard = guard_for(clock, fresh_sqlite_url, [], pricing={"source": "bundled"})
    run_cycle(guard)
    [item] = inventory_for(guard.store, guard.cfg, clock.now())
    assert "billed_usd" not in item
    guard.store.close()


def test_a_focus_export_is_read_too() -> None:
    table = pa.table(
        {
            "ResourceId": ["arn:aws:sagemaker:us-east-1:1:endpoint/ep", "i-0abc"],
            "ChargePeriodStart": ["2026-11-02T05:00:00Z", "2026-11-02T05:00:00Z"],
            "BilledCost": [1.5, 2.0],
            "ServiceName": ["Amazon SageMaker", "Amazon Elastic Compute Cloud"],
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    parsed = billing.parse_parquet(out.getvalue())
    assert list(parsed.values()) == [Decimal("1.5")]
    with pytest.raises(billing.BillingUnavailable):
        other = io.BytesIO()
        pq.write_table(pa.table({"x": [1]}), other)
        billing.parse_parquet(other.getvalue())


def test_budgets_use_billed_figures_for_closed_days(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    from guard.budgets import statuses

    start = clock.now()  # Monday 2026-11-23 09:00 UTC
    arn = sim.add_notebook("nb-a", "ml.m5.xlarge", in_service_since=start)
    budget = {"id": "month", "period": "month", "limit_usd": 100}
    guard = guard_for(
        clock, fresh_sqlite_url, [], pricing={"source": "bundled"}, billing=BILLING,
        budgets=[budget],
    )  # fmt: skip
    for _ in range(13):  # one hour: $0.23 estimated on Nov 23
        run_cycle(guard)
        clock.advance(timedelta(minutes=5))
    bill = [LineItem(arn, start, Decimal("0.50"))]  # the bill says $0.50 for that day
    put_cur_export(sim.client("s3"), BUCKET, PREFIX, bill)
    clock.advance(timedelta(days=1))
    run_cycle(guard)
    [st] = statuses(guard.cfg, guard.store, clock.now())
    assert st.actual_source == "billing-export" and st.actual_days == (start.date(),)
    assert st.actual_usd == Decimal("0.50")
    assert abs(st.estimate_on_actual_days_usd - Decimal("0.23")) <= Decimal("0.001")
    # the closed day is the bill's; today's estimate (still running) comes on top
    today = st.estimate_usd - st.estimate_on_actual_days_usd
    assert st.spend_usd == today + Decimal("0.50")
    # the budget view says so, flagged: $0.23 estimated against $0.50 billed is 54 % off
    from guard.budgets import budget_notes

    note = budget_notes([st], guard.cfg.billing.threshold)[0]  # then what the estimate misses
    assert note == (
        "month: 1 closed day(s) from the billing export, $0.50 (estimate $0.23): "
        "the estimate is -54% off the bill (flagged over 5%)"
    )
    assert "flagged" not in budget_notes([st], 0.60)[0]
    guard.store.close()
