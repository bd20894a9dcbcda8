"""Standard 5-field crontab expressions, read the same way everywhere a cron is configured
(schedule rules, the digest, config validation, the daemon's digest job).

APScheduler 3 is the engine, but its `CronTrigger.from_crontab` counts weekdays from 0 =
Monday (`1-5` would mean Tuesday to Saturday). Here the day-of-week field is read with
crontab's meaning and handed to APScheduler as weekday *names*, which it reads unambiguously:

- `0` and `7` are Sunday, `1-5` Monday to Friday; names `sun`..`sat` in any case; ranges,
  steps (`*/2` = Sun, Tue, Thu, Sat; `1-5/2` = Mon, Wed, Fri), lists, and a range ending on
  Sunday (`SAT-SUN`, `5-7`).
- When both day-of-month and day-of-week are restricted (neither starts with `*`), a day
  matching *either* fires, as in Vixie cron: `0 9 1 * MON` runs on the 1st and every Monday.
  If one of them starts with `*` (`*/2` included), both must match.
- Minutes, hours, days and months are APScheduler's (the same as crontab's: `*/15`, `9-17`,
  `1,15`, `JAN-MAR`), all in the configured timezone.
- Across DST changes: a wall-clock time that does not exist that day (02:30 in Europe/Berlin
  on the spring-forward Sunday) fires once, an hour later by the clock (03:30 CEST, the same
  instant as 02:30 CET); a fixed time that happens twice (02:30 on the fall-back Sunday) fires
  once, the first time; a minute or hour field starting with `*` fires in both repeated hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_APS_NAMES = {0: "sun", 1: "mon", 2: "tue", 3: "wed", 4: "thu", 5: "fri", 6: "sat"}
# How far back `last_fire` looks for the latest fire time, widest last.
_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=8), timedelta(days=400))
_MAX_FIRES = 2000


def trigger(expr: str, tz: tzinfo | str = UTC) -> BaseTrigger:
    """The APScheduler trigger for a standard 5-field crontab `expr` in `tz`.

    Raises ValueError, saying what is wrong, for anything that is not such an expression.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"a cron needs 5 fields (minute hour day month weekday), got {len(fields)}"
        )
    minute, hour, day, month, weekday = fields
    days = weekday_names(weekday)
    common = {"minute": minute, "hour": hour, "month": month, "timezone": tz}
    inner: BaseTrigger
    if day.startswith("*") or weekday.startswith("*"):
        inner = CronTrigger(day=day, day_of_week=days, **common)
    else:  # both restricted: crontab fires on a day that matches either field
        inner = OrTrigger(
            [
                CronTrigger(day=day, day_of_week="*", **common),
                CronTrigger(day_of_week=days, **common),
            ]
        )
    wildcard = minute.startswith("*") or hour.startswith("*")
    return _Crontab(expr, inner, once_per_wall_time=not wildcard)


class _Crontab(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """APScheduler's trigger, except that a fixed time repeated by a DST change fires once
    (the first time), as in Vixie cron; when the minute or hour starts with `*`, it fires in
    both repeated hours, as there."""

    def __init__(self, expr: str, inner: BaseTrigger, once_per_wall_time: bool) -> None:
        self.expr, self.inner, self.once = expr, inner, once_per_wall_time
        self.jitter = None

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        fire: datetime | None = self.inner.get_next_fire_time(previous_fire_time, now)
        while fire is not None and self.once and _second_of_repeated(fire):
            fire = self.inner.get_next_fire_time(fire, fire)
        return fire

    def __str__(self) -> str:
        return f"cron[{self.expr}]"

    def __repr__(self) -> str:
        return f"<crontab {self.expr!r} {self.inner!r}>"


def _second_of_repeated(when: datetime) -> bool:
    return when.fold == 1 and when.replace(fold=0).utcoffset() != when.utcoffset()


def validate(expr: str) -> None:
    """Raise ValueError if `expr` is not a cron `trigger` accepts."""
    trigger(expr)


def last_fire(
    expr: str, tz: tzinfo | str, now: datetime, within: timedelta | None = None
) -> datetime | None:
    """The latest time (UTC) at or before `now` at which `expr` fired, looking back at most
    `within` (default: 400 days); None if it did not fire in that time."""
    cron = trigger(expr, tz)
    limit = within or _WINDOWS[-1]
    for window in [w for w in _WINDOWS if w < limit] + [limit]:
        latest = None
        fire = cron.get_next_fire_time(None, now - window)
        for _ in range(_MAX_FIRES):
            if fire is None or fire > now:
                break
            latest = fire
            fire = cron.get_next_fire_time(fire, fire)
        if latest is not None:
            found: datetime = latest.astimezone(UTC)
            return found
    return None


def weekday_names(field: str) -> str:
    """A crontab day-of-week field (0/7 = Sunday) as APScheduler weekday names."""
    days: set[int] = set()
    for item in field.split(","):
        spec, _, step_text = item.partition("/")
        step = _number(step_text, "step") if step_text else 1
        if step < 1:
            raise ValueError(f"weekday step must be at least 1 in {field!r}")
        if spec == "*":
            first, last = 0, 6
        else:
            start, dash, end = spec.partition("-")
            first = _weekday(start, field)
            last = _weekday(end, field) if dash else (6 if step_text else first)
            if dash and last == 0 and first > 0:
                last = 7  # `SAT-SUN`, `5-0`: the range ends on Sunday
            if last < first:
                raise ValueError(f"weekday range {spec!r} runs backwards in {field!r}")
        days.update(d % 7 for d in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_APS_NAMES[d] for d in sorted(days))


def _weekday(text: str, field: str) -> int:
    name = text.strip().lower()
    if name in _DAY_NAMES:
        return _DAY_NAMES.index(name)
    value = _number(name, f"weekday in {field!r}")
    if not 0 <= value <= 7:
        raise ValueError(f"weekday {text!r} out of range 0-7 (0 and 7 = Sunday) in {field!r}")
    return value


def _number(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"invalid {what}: {text!r}")
    return int(text)
