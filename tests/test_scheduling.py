"""The jobs a running server schedules: every periodic job written is wired."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mailer.app import create_app
from mailer.jobs import poll_due_feeds, purge_job, run_due_digests
from mailer.services import Services

pytestmark = pytest.mark.both_databases
"""The scheduler's jobs claim rows with SKIP LOCKED: both databases."""


def test_a_running_server_schedules_digests_feeds_and_purges(services: Services) -> None:
    app = create_app(services, run_sender=False)
    with TestClient(app):
        scheduler = app.state.scheduler
        running = {job.id: job.func for job in scheduler.get_jobs()}
        assert scheduler.running
    assert running == {
        "digests": run_due_digests,
        "feeds": poll_due_feeds,
        "purge": purge_job,
    }


def test_a_server_started_without_its_scheduler_schedules_nothing(services: Services) -> None:
    app = create_app(services, run_sender=False, run_scheduler=False)
    with TestClient(app):
        assert app.state.scheduler is None
