"""The consent ledger: a hash chain per subscriber that the database keeps append-only,
that detects tampering, survives erasure, and records the purge of unconfirmed signups."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from mailer.clock import FrozenClock
from mailer.jobs import purge_job
from mailer.models import ConsentEvent
from mailer.services import Services
from mailer.subscriptions.ledger import event_hash, personal_digest
from tests.conftest import SmtpSink, count_rows, link_in, outbox_idle
from tests.factories import ARTICLE, BROWSER, READER, confirmed_reader_id, signed_up

pytestmark = pytest.mark.both_databases
"""The ledger's append-only guard is a trigger per dialect: both databases."""

PEER_IP = "203.0.113.7"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def find(editor: TestClient, email: str = READER) -> dict[str, Any]:
    [found] = editor.get("/api/v1/subscribers", params={"email": email}).json()
    return dict(found)


def subscriber(editor: TestClient, subscriber_id: int) -> dict[str, Any]:
    answer = editor.get(f"/api/v1/subscribers/{subscriber_id}")
    assert answer.status_code == 200
    return dict(answer.json())


def verify(editor: TestClient, subscriber_id: int) -> dict[str, Any]:
    answer = editor.get(f"/api/v1/subscribers/{subscriber_id}/consent/verify")
    assert answer.status_code == 200
    return dict(answer.json())


def run_sql(services: Services, statement: str, **params: Any) -> None:
    with services.engine.begin() as conn:
        conn.execute(text(statement), params)


def everything_stored(services: Services) -> str:
    """Every row of every table, as one string to search for personal data."""
    rows: list[str] = []
    with services.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            rows.extend(str(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table}"')))
    return "\n".join(rows)


# ---- the chain -------------------------------------------------------------------------


def test_a_readers_chain_verifies_through_the_api(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    signed_up(editor)
    [mail] = smtp.wait_for(1)
    subscriber_id = int(find(editor)["id"])
    report = verify(editor, subscriber_id)
    assert (report["valid"], report["events"]) == (True, 1)

    editor.post(link_in(mail.message, "/confirm/"))

    assert verify(editor, subscriber_id) == {
        "subscriber_id": subscriber_id,
        "valid": True,
        "events": 2,
        "first_bad_seq": None,
        "reason": "",
    }


def test_each_event_carries_the_hash_of_the_one_before(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    subscriber_id = confirmed_reader_id(editor, smtp, services)
    events = subscriber(editor, subscriber_id)["consent_events"]
    assert [event["seq"] for event in events] == [1, 2]
    assert all(re.fullmatch(r"[0-9a-f]{64}", event["hash"]) for event in events)
    with services.engine.connect() as conn:
        links = conn.execute(
            text("SELECT prev_hash FROM consent_events WHERE subscriber_id = :id ORDER BY seq"),
            {"id": subscriber_id},
        ).scalars()
        assert list(links) == ["", events[0]["hash"]]


def test_an_unknown_subscriber_is_404_to_verify_and_to_erase(editor: TestClient) -> None:
    assert editor.get("/api/v1/subscribers/999999/consent/verify").status_code == 404
    assert editor.post("/api/v1/subscribers/999999/erase").status_code == 404


# ---- the database guards the ledger ----------------------------------------------------

REFUSED = {
    "delete all": "DELETE FROM consent_events",
    "delete the latest": "DELETE FROM consent_events WHERE seq = 2",
    "change the action": "UPDATE consent_events SET action = 'confirmed' WHERE seq = 1",
    "change the wording": "UPDATE consent_events SET consent_text = 'I agree to anything'",
    "change the version": "UPDATE consent_events SET consent_version = 99",
    "change the form": "UPDATE consent_events SET form = 'other'",
    "change the time": "UPDATE consent_events SET at = '2001-01-01 00:00:00'",
    "change the lists": """UPDATE consent_events SET lists = '["sport"]'""",
    "renumber": "UPDATE consent_events SET seq = seq + 100",
    "move to another subscriber": "UPDATE consent_events SET subscriber_id = subscriber_id + 1",
    "rewrite the hash": "UPDATE consent_events SET hash = prev_hash",
    "rewrite the link": "UPDATE consent_events SET prev_hash = 'x'",
}


def test_the_database_refuses_to_delete_or_rewrite_an_event(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    subscriber_id = confirmed_reader_id(editor, smtp, services)
    for name, statement in REFUSED.items():
        with pytest.raises(DBAPIError, match="append-only"):
            run_sql(services, statement)
            pytest.fail(f"the database allowed: {name}")
    assert count_rows(services, ConsentEvent) == 2
    assert verify(editor, subscriber_id)["valid"] is True


def test_the_database_lets_personal_fields_be_replaced_by_their_digest(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    subscriber_id = confirmed_reader_id(editor, smtp, services)
    run_sql(
        services,
        "UPDATE consent_events SET ip = :ip, user_agent = :agent, source_url = :url WHERE seq = 1",
        ip=personal_digest(PEER_IP),
        agent=personal_digest(BROWSER),
        url=personal_digest(ARTICLE),
    )
    first = subscriber(editor, subscriber_id)["consent_events"][0]
    assert first["ip"] == personal_digest(PEER_IP)
    assert verify(editor, subscriber_id)["valid"] is True, "a digest stands in for the value"


def test_a_personal_field_replaced_by_anything_else_breaks_the_chain(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    subscriber_id = confirmed_reader_id(editor, smtp, services)
    run_sql(services, "UPDATE consent_events SET ip = '198.51.100.66' WHERE seq = 2")
    report = verify(editor, subscriber_id)
    assert (report["valid"], report["first_bad_seq"]) == (False, 2)


def disable_guard(services: Services) -> None:
    """What an attacker with full database access could do first."""
    if services.engine.dialect.name == "sqlite":
        run_sql(services, "DROP TRIGGER consent_events_erasure_only")
        run_sql(services, "DROP TRIGGER consent_events_no_delete")
    else:
        run_sql(services, "ALTER TABLE consent_events DISABLE TRIGGER consent_events_guard")


TAMPERINGS = {
    "wording of the request": (
        "UPDATE consent_events SET consent_text = 'I agree to anything' WHERE seq = 1",
        1,
    ),
    "wording of the confirmation": (
        "UPDATE consent_events SET consent_text = 'I agree to anything' WHERE seq = 2",
        2,
    ),
    "request turned into a confirmation": (
        "UPDATE consent_events SET action = 'confirmed' WHERE seq = 1",
        1,
    ),
    "time moved": ("UPDATE consent_events SET at = '2001-01-01 00:00:00' WHERE seq = 2", 2),
    "version changed": ("UPDATE consent_events SET consent_version = 7 WHERE seq = 1", 1),
    "first event deleted": ("DELETE FROM consent_events WHERE seq = 1", 2),
    "latest event deleted": ("DELETE FROM consent_events WHERE seq = 2", None),
}


def test_tampering_with_the_guard_disabled_is_detected(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    readers = {
        name: confirmed_reader_id(editor, smtp, services, f"reader{n}@example.com")
        for n, name in enumerate(TAMPERINGS)
    }
    disable_guard(services)
    for name, (statement, _) in TAMPERINGS.items():
        run_sql(services, statement + " AND subscriber_id = :id", id=readers[name])

    for name, (_, bad_seq) in TAMPERINGS.items():
        report = verify(editor, readers[name])
        assert (report["valid"], report["first_bad_seq"]) == (False, bad_seq), name
        assert report["reason"], name


# ---- erasure ---------------------------------------------------------------------------


def test_erasure_forgets_the_person_and_keeps_a_valid_chain(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    subscriber_id = confirmed_reader_id(editor, smtp, services)
    before = subscriber(editor, subscriber_id)["consent_events"]

    answer = editor.post(f"/api/v1/subscribers/{subscriber_id}/erase")

    assert answer.status_code == 200
    assert answer.json() == {"id": subscriber_id, "erased": True}
    assert editor.get("/api/v1/subscribers", params={"email": READER}).json() == []
    erased = subscriber(editor, subscriber_id)
    assert erased["erased"] is True
    assert "reader" not in erased["email"] and "example.com" not in erased["email"]
    assert [event["action"] for event in erased["consent_events"]] == [
        "requested",
        "confirmed",
        "erased",
    ]
    for old, kept in zip(before, erased["consent_events"], strict=False):
        for field in ("ip", "user_agent", "source_url"):
            assert DIGEST.fullmatch(kept[field]), field
            assert kept[field] == personal_digest(old[field])
        for field in ("seq", "action", "at", "lists", "form", "consent_text", "hash"):
            assert kept[field] == old[field], "only the personal fields change"
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


def test_after_erasure_the_address_is_stored_nowhere(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    smtp.handler.replies["bounced@example.com"] = (
        "550 5.1.1 <bounced@example.com>: Recipient address rejected: User unknown"
    )
    signed_up(editor, "bounced@example.com")
    outbox_idle(services)  # the relay refused it, quoting the address
    subscriber_id = int(find(editor, "bounced@example.com")["id"])

    editor.post(f"/api/v1/subscribers/{subscriber_id}/erase")

    stored = everything_stored(services)
    for personal in ("bounced@example.com", PEER_IP, BROWSER, ARTICLE):
        assert personal not in stored, personal


def test_erasure_stops_mail_that_is_still_queued(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport Weekly"})
    editor.post(
        "/api/v1/forms",
        json={"slug": "sport", "lists": ["sport"], "consent_text": "Sport, please."},
    )
    subscriber_id = confirmed_reader_id(editor, smtp, services)
    signed_up(editor, form="sport")  # its confirmation waits for the end of the mail window

    editor.post(f"/api/v1/subscribers/{subscriber_id}/erase")
    clock.advance(minutes=61)
    outbox_idle(services)

    assert len(smtp.messages) == 1, "the queued confirmation is never sent"


def test_an_erased_address_may_sign_up_afresh(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    old_id = confirmed_reader_id(editor, smtp, services)
    editor.post(f"/api/v1/subscribers/{old_id}/erase")
    clock.advance(minutes=61)

    new_id = confirmed_reader_id(editor, smtp, services)

    assert new_id != old_id
    fresh = find(editor)
    assert [event["action"] for event in fresh["consent_events"]] == ["requested", "confirmed"]
    assert verify(editor, new_id)["valid"] is True


def test_erased_subscribers_are_left_out_of_the_export(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    confirmed_reader_id(editor, smtp, services, "stays@example.com")
    gone = confirmed_reader_id(editor, smtp, services, "goes@example.com")
    editor.post(f"/api/v1/subscribers/{gone}/erase")
    export = editor.get("/api/v1/subscribers/export.csv").text
    assert "stays@example.com" in export
    assert "goes@example.com" not in export and "erased" not in export


# ---- purging unconfirmed signups -------------------------------------------------------


def test_an_unconfirmed_signup_is_purged_after_the_purge_period(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    kept_id = confirmed_reader_id(editor, smtp, services, "stays@example.com")
    signed_up(editor)
    smtp.wait_for(2)
    pending_id = int(find(editor)["id"])
    purge_after = services.settings.signup.pending_purge_after_hours
    link_ttl = services.settings.signup.confirm_token_ttl_hours
    assert purge_after > link_ttl

    clock.advance(hours=link_ttl + 1)
    assert purge_job(services) == 0, "an expired link alone is not enough"
    clock.advance(hours=purge_after - link_ttl)
    assert purge_job(services) == 1

    assert editor.get("/api/v1/subscribers", params={"email": READER}).json() == []
    purged = subscriber(editor, pending_id)
    assert purged["lists"] == []
    assert [event["action"] for event in purged["consent_events"]] == [
        "requested",
        "expired",
        "erased",
    ]
    expired = purged["consent_events"][1]
    assert expired["lists"] == ["news"]
    assert datetime.fromisoformat(expired["at"]).replace(tzinfo=UTC) == clock.now()
    assert DIGEST.fullmatch(purged["consent_events"][0]["ip"])
    assert verify(editor, pending_id)["valid"] is True

    kept = subscriber(editor, kept_id)
    assert kept["email"] == "stays@example.com"
    assert {item["status"] for item in kept["lists"]} == {"confirmed"}
    assert len(kept["consent_events"]) == 2
    assert purge_job(services) == 0, "purging twice does nothing more"

    signed_up(editor)  # the address may start afresh
    smtp.wait_for(3)
    assert [item["status"] for item in find(editor)["lists"]] == ["pending"]


def test_a_signup_renewed_with_a_fresh_link_is_not_purged(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    signed_up(editor)
    smtp.wait_for(1)
    clock.advance(hours=services.settings.signup.pending_purge_after_hours - 2)
    signed_up(editor)  # the reader asks again: a new link, valid for days
    [_, mail] = smtp.wait_for(2)
    clock.advance(hours=3)

    assert purge_job(services) == 0
    assert editor.post(link_in(mail.message, "/confirm/")).status_code == 200
    assert {item["status"] for item in find(editor)["lists"]} == {"confirmed"}


def test_a_confirmed_reader_loses_only_the_list_never_confirmed(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport Weekly"})
    editor.post(
        "/api/v1/forms",
        json={"slug": "sport", "lists": ["sport"], "consent_text": "Sport, please."},
    )
    subscriber_id = confirmed_reader_id(editor, smtp, services)
    clock.advance(minutes=61)
    signed_up(editor, form="sport")
    smtp.wait_for(2)  # never followed

    clock.advance(hours=services.settings.signup.pending_purge_after_hours + 1)
    assert purge_job(services) == 1

    reader = find(editor)
    assert reader["id"] == subscriber_id, "the reader is kept, address and all"
    assert {item["slug"]: item["status"] for item in reader["lists"]} == {"news": "confirmed"}
    last = reader["consent_events"][-1]
    assert (last["action"], last["lists"]) == ("expired", ["sport"])
    assert last["ip"] == "", "the purge is no request of the reader's"
    assert verify(editor, subscriber_id)["valid"] is True


# ---- the hash itself -------------------------------------------------------------------


def an_event(**changes: Any) -> ConsentEvent:
    fields: dict[str, Any] = {
        "subscriber_id": 1,
        "seq": 2,
        "action": "confirmed",
        "at": datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
        "lists": ["news"],
        "form": "default",
        "consent_text": "I agree to the terms.",
        "consent_version": 1,
        "source_url": ARTICLE,
        "ip": PEER_IP,
        "user_agent": BROWSER,
        "prev_hash": "a" * 64,
        "hash": "",
    }
    return ConsentEvent(**{**fields, **changes})


def test_the_event_hash_is_a_stable_sha256() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", event_hash(an_event()))
    assert event_hash(an_event()) == event_hash(an_event())


@pytest.mark.parametrize(
    "change",
    [
        {"subscriber_id": 2},
        {"seq": 3},
        {"action": "requested"},
        {"at": datetime(2026, 11, 24, 9, 30, 0, 1, tzinfo=UTC)},
        {"lists": ["news", "sport"]},
        {"form": "other"},
        {"consent_text": "I agree to the terms!"},
        {"consent_version": 2},
        {"consent_version": None},
        {"source_url": ARTICLE + "?x"},
        {"ip": "203.0.113.8"},
        {"user_agent": BROWSER + " "},
        {"prev_hash": "b" * 64},
    ],
    ids=lambda change: next(iter(change)),
)
def test_every_field_is_covered_by_the_hash(change: dict[str, Any]) -> None:
    assert event_hash(an_event(**change)) != event_hash(an_event())


def test_a_personal_field_hashes_the_same_as_its_digest() -> None:
    erased = an_event(
        source_url=personal_digest(ARTICLE),
        ip=personal_digest(PEER_IP),
        user_agent=personal_digest(BROWSER),
    )
    assert event_hash(erased) == event_hash(an_event())


def test_the_time_counts_as_the_same_instant_in_any_zone_or_naive_utc() -> None:
    at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    naive = an_event(at=at.replace(tzinfo=None))
    berlin = an_event(at=at.astimezone(ZoneInfo("Europe/Berlin")))
    assert event_hash(naive) == event_hash(berlin) == event_hash(an_event())


def test_the_personal_digest_is_prefixed_stable_and_idempotent() -> None:
    digest = personal_digest(PEER_IP)
    assert DIGEST.fullmatch(digest)
    assert personal_digest(PEER_IP) == digest
    assert personal_digest(digest) == digest, "erasing twice changes nothing"
    assert personal_digest("203.0.113.8") != digest
    assert PEER_IP not in digest
