"""APScheduler wiring and cron arithmetic: due digests, feed polls, purges; state in the DB.

APScheduler only ticks: which digest is due is the `next_run_at` column, and a run is
claimed by inserting its send (unique per digest and due time), so any number of
processes may tick against one database and each run is sent once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlmodel import col, select

from mailer import accounts
from mailer.bounces import replay
from mailer.config import Settings
from mailer.content import feeds
from mailer.db import session_scope
from mailer.delivery import sends
from mailer.models import Digest
from mailer.services import Services
from mailer.subscriptions.erasure import purge_unconfirmed
from mailer.webhooks import retention

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 15 * 60


class BadSchedule(ValueError):
    """A cron expression or time zone that cannot be used."""


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


def run_due_digests(services: Services) -> list[int]:
    """Start the send of every digest that is due; returns the ids of the sends started.

    A run missed while no process was up is sent once; the next run is then computed
    from now, so there is no burst of repeats.
    """
    now = services.clock.now()
    started: list[int] = []
    with session_scope(services.engine) as session:
        due_ids = list(
            session.exec(
                select(Digest.id).where(col(Digest.next_run_at) <= now, col(Digest.enabled))
            )
        )
    for digest_id in due_ids:
        with session_scope(services.engine) as session:
            digest = session.exec(
                select(Digest).where(col(Digest.id) == digest_id).with_for_update(skip_locked=True)
            ).first()
            if digest is None or digest.next_run_at is None or digest.next_run_at > now:
                continue  # another process has it, or took it already
            try:
                send = sends.start_send(
                    session,
                    services.settings,
                    services.renderer,
                    digest,
                    scheduled_for=digest.next_run_at,
                    now=now,
                )
            except sends.AlreadyStarted:
                send = None
            digest.next_run_at = next_run_of(digest, now)
            session.add(digest)
        if send is not None and send.id is not None:
            log.info("digest %s: send %s %s %s", digest_id, send.id, send.status, send.reason)
            started.append(send.id)
    if started:
        services.sender.notify()
    return started


def poll_due_feeds(services: Services) -> dict[int, str]:
    """Poll every feed that is due; returns each feed's outcome ("ok", "error", ...)."""
    with session_scope(services.engine) as session:
        due_ids = feeds.due(session, services.clock.now())
    outcomes = {}
    for feed_id in due_ids:
        result = feeds.poll(services.engine, services.outbound, feed_id, services.clock.now())
        outcomes[feed_id] = result.status
    return outcomes


def purge_job(services: Services) -> int:
    """Drop unconfirmed signups past their expiry and the purge period (returns how many),
    the editors' sign-ins that expired or were ended, old webhook deliveries, and
    providers' notification tokens past their window."""
    older_than = timedelta(hours=services.settings.signup.pending_purge_after_hours)
    keep_deliveries = timedelta(days=services.settings.webhooks.keep_days)
    with session_scope(services.engine) as session:
        purged = purge_unconfirmed(session, older_than, services.clock.now())
        accounts.purge_sessions(session, services.clock.now())
        retention.purge_older_than(session, keep_deliveries, services.clock.now())
        replay.purge(session, services.clock.now())
    if purged:
        log.info("purged %d unconfirmed subscriptions", purged)
    return purged


@dataclass(frozen=True)
class Job:
    """One periodic job of a running scheduler: `run(services)` every `every_seconds`."""

    id: str
    run: Callable[[Services], object]
    every_seconds: float
    at_start: bool
    """Run once as soon as the scheduler starts, not only after the first interval."""


def jobs(settings: Settings) -> list[Job]:
    """Every job a scheduler runs (`mailer serve`, unless a test leaves it out)."""
    return [
        Job("digests", run_due_digests, settings.digests.check_interval_seconds, True),
        Job("feeds", poll_due_feeds, settings.feeds.check_interval_seconds, True),
        Job("purge", purge_job, PURGE_INTERVAL_SECONDS, False),
    ]


def make_scheduler(services: Services) -> AsyncIOScheduler:
    """An APScheduler with every job of `jobs`. Plain functions run in the event loop's
    thread pool, so a slow feed or a long purge never holds up HTTP requests."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    for job in jobs(services.settings):
        scheduler.add_job(
            job.run,
            "interval",
            seconds=job.every_seconds,
            args=[services],
            id=job.id,
            coalesce=True,
            max_instances=1,
            **({"next_run_time": datetime.now(UTC)} if job.at_start else {}),
        )
    return scheduler
