"""Whatever a person types into a time-valued tag (snooze, heartbeat) is either a time or
ignored with a finding: it never crashes a cycle, the inventory or the digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guard import digest
from guard.cycle import run_cycle
from guard.model import ManualClock, parse_time
from guard.reports import finding_text, inventory_for
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")

SNOOZE, HEARTBEAT = "cost-guard:snooze-until", "cost-guard:last-activity"
IDLE_STOP = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "0s"}
IDLE_DELETE = {
    "id": "idle-apps",
    "kind": "studio_app",
    "idle_for": "2h",
    "action": "delete",
    "grace": "0s",
}
JUNK = "snooze me please " * 14  # 238 characters, all valid in a tag


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01 10:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01T10:00:00.123456789Z", datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-12-01t10:00:00z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01T11:00:00+0100", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01T11:00:00+01:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("  2026-12-01T10:00:00Z\n", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2200-12-31T23:59:59Z", datetime(2200, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", None),
        ("9999-12-31T23:59:59-12:00", None),
        ("0001-01-01T00:00:00+14:00", None),
        ("1970-01-01T00:00:00Z", None),
        ("2026-13-01T00:00:00Z", None),
        ("2026-12-01T10:00:00+25:00", None),
        ("", None),
        ("   ", None),
        ("x" * 300, None),
        (JUNK, None),
        ("\uff12\uff10\uff12\uff16-12-01", None),  # full-width digits
        ("2026-12-01T10:00:00\x00Z", None),
    ],
)
def test_parse_time_reads_or_ignores_never_raises(value: str, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_a_cycle_with_odd_tag_values_judges_everything_and_reports_them(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    five_hours_ago = clock.now() - timedelta(hours=5)
    odd = {
        "snooze-forever": {SNOOZE: "9999-12-31T23:59:59Z"},
        "beat-late": {HEARTBEAT: "9999-12-31T23:59:59-12:00"},
        "beat-early": {HEARTBEAT: "0001-01-01T00:00:00+14:00"},
        "snooze-junk": {SNOOZE: JUNK},
    }
    for name, tags in odd.items():
        sim.add_notebook(name, tags=tags, in_service_since=five_hours_ago)
    sim.add_notebook("plain", in_service_since=five_hours_ago)
    sim.add_notebook(
        "snoozed", tags={SNOOZE: "2026-11-23 20:00"}, in_service_since=five_hours_ago
    )  # a correct snooze in a form people write: respected
    domain = sim.add_domain("team", idle_shutdown=True)
    sim.add_user_profile(domain, "alice", tags={"owner": "alice@example.com"})
    sim.add_space(domain, "alice-space", "alice")
    app = sim.add_app(
        domain, space="alice-space", created_at=five_hours_ago,
        tags={HEARTBEAT: "9999-12-31T23:59:59+14:00"},
    )  # fmt: skip
    guard = guard_for(
        clock, db_url, [IDLE_STOP, IDLE_DELETE], mode="enforce", timezone="Europe/Berlin"
    )

    report = run_cycle(guard)

    assert report["errors"] == []
    acted = sorted((a["kind"], a["name"], a["outcome"]) for a in report["actions"])
    notebooks = [("notebook", name, "done") for name in sorted([*odd, "plain"])]
    assert [a for a in acted if a[0] == "notebook"] == notebooks
    assert [a["arn"] for a in report["actions"] if a["kind"] == "studio_app"] == [app]
    texts = [finding_text(f) for f in report["findings"]]
    for name, tags in odd.items():
        [(key, value)] = tags.items()
        [line] = [t for t in texts if f"notebook {name}:" in t]
        assert f"tag {key}=" in line and "ignored" in line
        assert (value if len(value) <= 40 else value[:40] + "…") in line
    assert any(f"tag {HEARTBEAT}='9999-12-31T23:59:59+14:00'" in t for t in texts)
    assert not any("snoozed" in t or "plain" in t for t in texts)
    # The snapshot holds no out-of-range time; the inventory and the digest read it.
    by_name = {r.name: r for r in guard.store.resources(include_gone=True)}
    assert by_name["beat-late"].last_activity is None or (
        by_name["beat-late"].last_activity.year < 2200
    )
    assert by_name["beat-late"].tags[HEARTBEAT] == "9999-12-31T23:59:59-12:00"
    assert {i["name"] for i in inventory_for(guard.store, guard.cfg, clock.now(), True)} >= {
        *odd,
        "snoozed",
    }
    digest.text(digest.build(guard.cfg, guard.store, clock.now()))

    clock.advance(timedelta(minutes=10))
    again = run_cycle(guard)  # the next cycle too: nothing left to judge but the snoozed one
    assert again["errors"] == [] and again["actions"] == []
    guard.store.close()
