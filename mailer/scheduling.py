"""APScheduler wiring: the periodic jobs of a serving process (purge of stale signups)."""

from __future__ import annotations

import logging
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from mailer.db import session_scope
from mailer.services import Services
from mailer.subscriptions.erasure import purge_unconfirmed

log = logging.getLogger(__name__)


def purge_job(services: Services) -> int:
    """Drop unconfirmed signups past their expiry and the purge period."""
    older_than = timedelta(hours=services.settings.signup.pending_purge_after_hours)
    with session_scope(services.engine) as session:
        purged = purge_unconfirmed(session, older_than, services.clock.now())
    if purged:
        log.info("purged %d unconfirmed subscriptions", purged)
    return purged


def make_scheduler(services: Services) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(
        purge_job,
        "interval",
        minutes=15,
        args=[services],
        id="purge",
        coalesce=True,
        max_instances=1,
    )
    return scheduler
