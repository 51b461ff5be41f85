"""Schedule arithmetic: a digest's cron expression and time zone, its next runs, and
how editors read them. No jobs and no I/O; APScheduler's CronTrigger does the counting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from mailer.errors import Invalid
from mailer.models import Digest


class BadSchedule(Invalid):
    """A cron expression or time zone that cannot be used (refused as the schedule)."""

    def __init__(self, message: str) -> None:
        super().__init__("schedule", message)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadSchedule(f"unknown time zone {name!r}") from exc


DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Cron's day-of-week numbers: 0 (and 7) is Sunday."""


def _day_number(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token.lower() in DAY_NAMES:
        return DAY_NAMES.index(token.lower())
    raise BadSchedule(f"invalid day of the week {token!r}")


def _weekdays(field: str) -> str:
    """Cron's day-of-week field as day names. APScheduler reads the numbers 0-6 as
    Monday-Sunday, cron as Sunday-Saturday: "1-5" must mean Monday to Friday."""
    if field in ("*", "?"):
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if step and not step.isdigit() or step == "0":
            raise BadSchedule(f"invalid step in the day of the week {part!r}")
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            first, _, last = span.partition("-")
            low, high = _day_number(first), _day_number(last)
            if high < low:
                raise BadSchedule(f"invalid range of days {span!r}")
        else:
            low = _day_number(span)
            high = 6 if step else low
        days.update(day % 7 for day in range(low, high + 1, int(step or 1)))
    return ",".join(DAY_NAMES[day] for day in sorted(days))


def trigger(schedule: str, timezone: str) -> CronTrigger:
    """The cron trigger for a 5-field expression in an IANA time zone."""
    fields = schedule.split()
    if len(fields) == 5:
        fields[4] = _weekdays(fields[4])
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=zone(timezone))
    except BadSchedule:
        raise
    except ValueError as exc:
        raise BadSchedule(f"invalid cron expression {schedule!r}: {exc}") from exc


def next_runs(schedule: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` run times strictly after `after`, in UTC."""
    cron = trigger(schedule, timezone)
    runs: list[datetime] = []
    moment = after
    for _ in range(count):
        upcoming = cron.get_next_fire_time(None, moment + timedelta(seconds=1))
        if upcoming is None:
            break
        runs.append(upcoming.astimezone(UTC))
        moment = upcoming
    return runs


def local_runs(schedule: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` run times strictly after `after`, in the schedule's time zone."""
    where = zone(timezone)
    return [run.astimezone(where) for run in next_runs(schedule, timezone, after, count)]


def run_label(moment: datetime) -> str:
    """A run time as editors read it: "Mon 30 Mar 2026, 07:00 CEST"."""
    return moment.strftime("%a %d %b %Y, %H:%M %Z")


def describe(schedule: str) -> str:
    """A cron expression in words for the usual cases ("weekdays at 07:00"); others
    are "custom"."""
    fields = schedule.split()
    if len(fields) != 5 or fields[2:4] != ["*", "*"]:
        return "custom"
    minute, hour, _, _, weekdays = fields
    if not minute.isdigit() or int(minute) > 59:
        return "custom"
    if hour == "*":
        return f"every hour at minute {int(minute)}" if weekdays == "*" else "custom"
    if not hour.isdigit() or int(hour) > 23:
        return "custom"
    at = f"{int(hour):02d}:{int(minute):02d}"
    try:
        days = _weekdays(weekdays)
    except BadSchedule:
        return "custom"
    if days in ("*", "?", ",".join(DAY_NAMES)):
        return f"daily at {at}"
    if days == "mon,tue,wed,thu,fri":
        return f"weekdays at {at}"
    names = [day.capitalize() for day in days.split(",")]
    if names[0] == "Sun":
        names = names[1:] + names[:1]  # the week starts on Monday
    return f"every {', '.join(names)} at {at}"


def next_run_of(digest: Digest, after: datetime) -> datetime | None:
    """When `digest` is next due after `after` (None: never again)."""
    if not digest.enabled:
        return None
    if digest.schedule:
        upcoming = next_runs(digest.schedule, digest.timezone, after, 1)
        return upcoming[0] if upcoming else None
    if digest.send_at is not None and digest.last_sent_at is None and digest.send_at > after:
        return digest.send_at
    return None
