"""Standard crontab semantics, the same for schedule rules, the digest, config and the daemon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from guard import cron
from guard.config import ConfigError, load_config

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2026, 11, 23, tzinfo=BERLIN)  # Monday 2026-11-23 00:00 in Berlin


def fire_days(weekday_field: str) -> list[str]:
    """The weekdays on which `0 20 * * <field>` fires in the week from MONDAY (in Berlin)."""
    trigger = cron.trigger(f"0 20 * * {weekday_field}", BERLIN)
    days, fire = [], trigger.get_next_fire_time(None, MONDAY)
    while fire is not None and fire < MONDAY + timedelta(days=7):
        local = fire.astimezone(BERLIN)
        assert (local.hour, local.minute) == (20, 0)
        days.append(f"{local:%a}")
        fire = trigger.get_next_fire_time(fire, fire)
    return days


WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]
EVERY_DAY = [*WEEKDAYS, "Sat", "Sun"]


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1-5", WEEKDAYS),
        ("MON-FRI", WEEKDAYS),
        ("mon-fri", WEEKDAYS),
        ("Mon-Fri", WEEKDAYS),
        ("1,2,3,4,5", WEEKDAYS),
        ("0", ["Sun"]),
        ("7", ["Sun"]),
        ("SUN", ["Sun"]),
        ("6,0", ["Sat", "Sun"]),
        ("sat,sun", ["Sat", "Sun"]),
        ("SAT-SUN", ["Sat", "Sun"]),
        ("6-7", ["Sat", "Sun"]),
        ("5-7", ["Fri", "Sat", "Sun"]),
        ("*/2", ["Tue", "Thu", "Sat", "Sun"]),  # 0, 2, 4, 6: Sunday first, as crontab counts
        ("1-5/2", ["Mon", "Wed", "Fri"]),
        ("1,3-4,sat", ["Mon", "Wed", "Thu", "Sat"]),
        ("0-7", EVERY_DAY),
        ("*", EVERY_DAY),
    ],
)
def test_weekdays_count_from_sunday_as_in_crontab(field: str, days: list[str]) -> None:
    assert fire_days(field) == days


def test_minutes_steps_and_last_fire() -> None:
    now = datetime(2026, 11, 23, 10, 7, tzinfo=UTC)
    assert cron.last_fire("*/15 * * * *", UTC, now) == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    # Monday 21:00 UTC: the weekday schedule fired this Monday (not on Saturday, as 0 = Monday
    # would have it), and the Sunday one yesterday.
    monday_night = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
    assert cron.last_fire("0 20 * * 1-5", UTC, monday_night) == monday_night - timedelta(hours=1)
    assert cron.last_fire("0 20 * * 0", UTC, monday_night) == datetime(
        2026, 11, 22, 20, 0, tzinfo=UTC
    )
    # `within` bounds the look back (the digest looks one day back).
    assert cron.last_fire("0 20 * * 0", UTC, monday_night, within=timedelta(days=1)) is None


def test_day_of_month_and_weekday_both_restricted_fire_on_either() -> None:
    start = datetime(2026, 11, 28, tzinfo=BERLIN)  # Saturday
    trigger = cron.trigger("0 9 1 * MON", BERLIN)
    fires, fire = [], trigger.get_next_fire_time(None, start)
    while fire is not None and fire < start + timedelta(days=10):
        fires.append(f"{fire.astimezone(BERLIN):%a %d}")
        fire = trigger.get_next_fire_time(fire, fire)
    assert fires == ["Mon 30", "Tue 01", "Mon 07"]
    # One of them starting with `*` (a step included): both must match, as in crontab.
    assert cron.last_fire("0 9 */2 * MON", BERLIN, datetime(2026, 12, 8, tzinfo=UTC)) == datetime(
        2026, 12, 7, 8, 0, tzinfo=UTC
    )
    assert cron.last_fire("0 9 */2 * MON", BERLIN, datetime(2026, 12, 6, tzinfo=UTC)) == datetime(
        2026, 11, 23, 8, 0, tzinfo=UTC
    )


def test_daylight_saving_changes_in_berlin() -> None:
    # A weekday 20:00 follows the wall clock: 18:00 UTC in summer time, 19:00 UTC after.
    before = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)  # Saturday, still CEST
    after = datetime(2026, 10, 26, 21, 0, tzinfo=UTC)  # Monday, CET
    assert cron.last_fire("0 20 * * 1-5", BERLIN, before) == datetime(
        2026, 10, 23, 18, 0, tzinfo=UTC
    )
    assert cron.last_fire("0 20 * * 1-5", BERLIN, after) == datetime(2026, 10, 26, 19, tzinfo=UTC)
    # 02:30 happens twice on the fall-back Sunday: it fires once, the first time.
    assert cron.last_fire("30 2 * * 0", BERLIN, datetime(2026, 10, 25, 3, tzinfo=UTC)) == (
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    )
    # A minute field starting with `*` is a wildcard job: it fires in both 2 o'clock hours.
    wildcard = cron.trigger("*/30 2 * * 0", BERLIN)
    fires, fire = [], wildcard.get_next_fire_time(None, datetime(2026, 10, 24, 23, tzinfo=UTC))
    while fire is not None and fire < datetime(2026, 10, 25, 3, tzinfo=UTC):
        fires.append(f"{fire.astimezone(UTC):%H:%M}")
        fire = wildcard.get_next_fire_time(fire, fire)
    assert fires == ["00:00", "00:30", "01:00", "01:30"]
    # 02:30 does not exist on the spring-forward Sunday: it fires once, at 01:30 UTC.
    trigger = cron.trigger("30 2 * * SUN", BERLIN)
    first = trigger.get_next_fire_time(None, datetime(2026, 3, 28, tzinfo=UTC))
    assert first is not None and first.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    second = trigger.get_next_fire_time(first, first)
    assert second is not None and second.astimezone(UTC) == datetime(2026, 4, 5, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "expr",
    [
        "0 20 * * 8",
        "0 20 * * MON-",
        "0 20 * * 5-1",
        "0 20 * * */0",
        "0 20 * * funday",
        "0 20 * *",
        "0 20 * * * *",
        "61 * * * *",
        "0 25 * * *",
    ],
)
def test_invalid_crons_are_refused_by_the_config(expr: str) -> None:
    with pytest.raises(ValueError):
        cron.validate(expr)
    rule = {"id": "night", "kind": "notebook", "schedule": expr, "action": "notify"}
    with pytest.raises(ConfigError, match=r"rule 'night' field schedule: .*invalid cron"):
        load_config(None, rules=[rule])
    with pytest.raises(ConfigError, match="invalid cron"):
        load_config(None, slack={"digest": expr})


def test_numeric_weekdays_are_accepted_by_the_config() -> None:
    rule = {"id": "night", "kind": "notebook", "schedule": "0 20 * * 1-5", "action": "notify"}
    cfg = load_config(None, rules=[rule], slack={"digest": "0 9 * * 0,6"})
    assert cfg.rules[0].schedule == "0 20 * * 1-5"
