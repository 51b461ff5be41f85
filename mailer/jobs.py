"""The scheduler's jobs: due digests, feed polls, purges, wired into APScheduler.

APScheduler only ticks: which digest is due is the `next_run_at` column, and a run is
claimed by inserting its send (unique per digest and due time), so any number of
processes may tick against one database and each run is sent once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlmodel import col, select

from mailer import accounts
from mailer.bounces import replay
from mailer.config import Settings
from mailer.content import feeds
from mailer.content.schedules import next_run_of
from mailer.db import session_scope
from mailer.delivery import sends
from mailer.models import Digest
from mailer.services import Services
from mailer.subscriptions.erasure import purge_unconfirmed
from mailer.webhooks import retention

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 15 * 60


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
