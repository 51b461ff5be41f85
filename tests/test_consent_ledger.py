"""The consent ledger: append-only in the database, hash-chained, erasable, purged."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mailer.clock import FrozenClock
from mailer.models import ConsentEvent, OutboxStatus
from mailer.scheduling import purge_job
from mailer.services import Services
from mailer.subscriptions import ledger
from tests.conftest import SmtpSink, count_rows, link_in

READER = "reader@example.com"


def sign_up_and_confirm(editor: TestClient, smtp: SmtpSink, email: str = READER) -> int:
    before = len(smtp.messages)
    editor.post(
        "/subscribe",
        json={"email": email, "source_url": "https://news.example/story"},
        headers={"User-Agent": "Browser/1.0"},
    )
    mail = smtp.wait_for(before + 1)[-1]
    editor.post(link_in(mail.message, "/confirm/"))
    [found] = editor.get("/api/v1/subscribers", params={"email": email}).json()
    return int(found["id"])


def verify(editor: TestClient, subscriber_id: int) -> dict[str, Any]:
    answer = editor.get(f"/api/v1/subscribers/{subscriber_id}/consent/verify")
    assert answer.status_code == 200
    return dict(answer.json())


def test_a_fresh_chain_verifies(editor: TestClient, smtp: SmtpSink) -> None:
    report = verify(editor, sign_up_and_confirm(editor, smtp))
    assert report["valid"] is True
    assert report["events"] == 2


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM consent_events",
        "UPDATE consent_events SET action = 'confirmed'",
        "UPDATE consent_events SET consent_text = 'I agree to anything'",
        "UPDATE consent_events SET seq = seq + 100",
    ],
)
def test_the_database_refuses_to_delete_or_rewrite_events(
    editor: TestClient, services: Services, smtp: SmtpSink, statement: str
) -> None:
    sign_up_and_confirm(editor, smtp)
    with pytest.raises(DBAPIError, match="append-only"), services.engine.begin() as conn:
        conn.execute(text(statement))
    assert count_rows(services, ConsentEvent) == 2


def test_personal_fields_may_be_replaced_by_their_digest(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    subscriber_id = sign_up_and_confirm(editor, smtp)
    with services.engine.begin() as conn:
        conn.execute(text("UPDATE consent_events SET ip = 'sha256:x', user_agent = 'sha256:y'"))
    assert count_rows(services, ConsentEvent) == 2
    assert verify(editor, subscriber_id)["valid"] is False, "a wrong digest is detected"


def _disable_guard(services: Services) -> None:
    with services.engine.begin() as conn:
        if services.engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER consent_events_erasure_only"))
        else:
            conn.execute(text("ALTER TABLE consent_events DISABLE TRIGGER consent_events_guard"))


def test_tampering_by_someone_with_database_access_is_detected(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    subscriber_id = sign_up_and_confirm(editor, smtp)
    _disable_guard(services)
    with services.engine.begin() as conn:
        conn.execute(
            text("UPDATE consent_events SET consent_text = 'I agree to anything' WHERE seq = 1")
        )
    report = verify(editor, subscriber_id)
    assert report["valid"] is False
    assert report["first_bad_seq"] == 1


def test_erasure_forgets_the_person_and_keeps_a_valid_chain(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    subscriber_id = sign_up_and_confirm(editor, smtp)
    answer = editor.post(f"/api/v1/subscribers/{subscriber_id}/erase")
    assert answer.status_code == 200
    assert editor.get("/api/v1/subscribers", params={"email": READER}).json() == []
    erased = editor.get(f"/api/v1/subscribers/{subscriber_id}").json()
    assert erased["erased"] is True
    assert READER not in erased["email"]
    assert [e["action"] for e in erased["consent_events"]] == ["requested", "confirmed", "erased"]
    for event in erased["consent_events"][:2]:
        for field in ("ip", "user_agent", "source_url"):
            assert event[field].startswith("sha256:")
    assert {item["status"] for item in erased["lists"]} == {"unsubscribed"}
    assert verify(editor, subscriber_id) == {
        "subscriber_id": subscriber_id,
        "valid": True,
        "events": 3,
        "first_bad_seq": None,
        "reason": "",
    }
    again = editor.post(f"/api/v1/subscribers/{subscriber_id}/erase")
    assert again.status_code == 200
    assert verify(editor, subscriber_id)["events"] == 3, "erasing twice adds nothing"


def test_erasure_drops_queued_mail(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    smtp.stop()  # the confirmation mail stays queued
    editor.post("/subscribe", json={"email": READER})
    [found] = editor.get("/api/v1/subscribers", params={"email": READER}).json()
    editor.post(f"/api/v1/subscribers/{found['id']}/erase")
    with services.engine.connect() as conn:
        states = conn.execute(text("SELECT status FROM outbox")).scalars().all()
    assert states == [OutboxStatus.superseded]


def test_erasing_an_unknown_subscriber_is_404(editor: TestClient) -> None:
    assert editor.post("/api/v1/subscribers/999999/erase").status_code == 404
    assert editor.get("/api/v1/subscribers/999999/consent/verify").status_code == 404


def test_unconfirmed_signups_are_purged_and_the_address_forgotten(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirmed_id = sign_up_and_confirm(editor, smtp, email="stays@example.com")
    editor.post("/subscribe", json={"email": READER})
    smtp.wait_for(2)
    [pending] = editor.get("/api/v1/subscribers", params={"email": READER}).json()

    clock.advance(hours=24)
    assert purge_job(services) == 0, "nothing is purged while the link still works"

    clock.advance(hours=24 * 7)
    assert purge_job(services) == 1
    assert editor.get("/api/v1/subscribers", params={"email": READER}).json() == []
    purged = editor.get(f"/api/v1/subscribers/{pending['id']}").json()
    assert [e["action"] for e in purged["consent_events"]] == ["requested", "expired", "erased"]
    assert purged["lists"] == []
    assert verify(editor, pending["id"])["valid"] is True
    kept = editor.get(f"/api/v1/subscribers/{confirmed_id}").json()
    assert kept["email"] == "stays@example.com"
    assert {item["status"] for item in kept["lists"]} == {"confirmed"}

    again = editor.post("/subscribe", json={"email": READER})
    assert again.status_code == 202, "the address may sign up afresh"
    smtp.wait_for(3)


def test_personal_digest_is_stable_and_idempotent() -> None:
    digest = ledger.personal_digest("198.51.100.4")
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert ledger.personal_digest(digest) == digest
    assert ledger.personal_digest("198.51.100.5") != digest
