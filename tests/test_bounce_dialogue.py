"""Refusals in the SMTP dialogue, as bounces: only a final refusal counts. A deferral
that a later try gets past (greylisting defers the first try of every new VERP sender)
leaves no bounce behind."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailer.clock import SystemClock
from mailer.db import session_scope
from mailer.models import BounceEvent
from mailer.services import Services
from tests.conftest import SmtpSink
from tests.factories import add_readers, send_digest, wait_attempts

pytestmark = pytest.mark.parametrize(
    "settings_overrides", [{"sender": {"retry_base_seconds": 0.2, "max_attempts": 2}}]
)


@pytest.fixture
def clock() -> SystemClock:  # type: ignore[override]
    return SystemClock()


def bounce_events(services: Services) -> list[BounceEvent]:
    with session_scope(services.engine) as session:
        return list(session.exec(select(BounceEvent)))


def test_a_deferral_that_a_later_try_gets_past_is_no_bounce(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, ["grey@example.com"])
    smtp.handler.replies["grey@example.com"] = "450 4.2.0 Greylisted, please try again later"
    send_id = send_digest(editor)
    wait_attempts(editor, send_id, {"grey@example.com": 1})
    del smtp.handler.replies["grey@example.com"]
    smtp.wait_for(1)
    time.sleep(0.2)  # the outcome is recorded just after the relay's answer
    assert bounce_events(services) == []


def test_a_deferral_until_the_sender_gives_up_counts_as_a_soft_bounce(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, ["full@example.com"])
    smtp.handler.replies["full@example.com"] = "452 4.2.2 Mailbox full"
    send_id = send_digest(editor)
    messages = wait_attempts(editor, send_id, {"full@example.com": 2})
    assert messages["full@example.com"]["status"] == "failed"
    [event] = bounce_events(services)
    assert (event.kind, event.status, event.source) == ("soft", "4.2.2", "smtp")
    [reader] = editor.get("/api/v1/subscribers", params={"email": "full@example.com"}).json()
    assert reader["suppression"] is None, "one soft bounce is below the limit"
