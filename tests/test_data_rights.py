"""Data rights: one subscriber's data exported in full (API, admin download, CLI) and
erased from the command line, with the consent chain still verifiable afterwards."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.models import (
    BounceEvent,
    BounceKind,
    ConsentEvent,
    Subscriber,
    Subscription,
    SuppressionReason,
)
from mailer.services import Services
from mailer.subscriptions import suppression
from tests.commands import MAILER, mailer, operator_env
from tests.conftest import SECRET, SmtpSink, count_rows, link_in, outbox_idle
from tests.factories import ARTICLE, BROWSER, signed_up

pytestmark = pytest.mark.both_databases
"""Erasure, the ledger's guard and imports (bulk inserts): both databases."""

READER = "rita.reader@example.com"
READER_NAME = "Rita Reader"
PEER_IP = "203.0.113.7"
BOUNCE_DETAIL = "452 4.2.2 mailbox full"


def subscriber_id_of(editor: TestClient, email: str = READER) -> int:
    [found] = editor.get("/api/v1/subscribers", params={"email": email}).json()
    return int(found["id"])


def export(editor: TestClient, subscriber_id: int) -> dict[str, Any]:
    answer = editor.get(f"/api/v1/subscribers/{subscriber_id}/export")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def reader_with_a_history(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> int:
    """A reader who signed up, confirmed, got a digest, bounced once and unsubscribed."""
    signed_up(editor, READER)
    confirm_mail = smtp.wait_for(1)[-1]
    confirmed = editor.post(
        link_in(confirm_mail.message, "/confirm/"), headers={"User-Agent": BROWSER}
    )
    assert confirmed.status_code == 200
    subscriber_id = subscriber_id_of(editor)
    with session_scope(services.engine) as session:
        row = session.get(Subscriber, subscriber_id)
        assert row is not None
        row.name = READER_NAME
        session.add(row)
    posted = editor.post(
        "/api/v1/articles",
        json={
            "url": "https://news.example.com/story-1",
            "title": "Story 1",
            "summary": "What happened.",
            "topics": ["world"],
            "published_at": (clock.now() - timedelta(hours=1)).isoformat(),
        },
    )
    assert posted.status_code == 201, posted.text
    digest = editor.post(
        "/api/v1/digests",
        json={"list": "news", "name": "Morning Brief", "schedule": "0 7 * * *"},
    ).json()
    send = editor.post(f"/api/v1/digests/{digest['id']}/send")
    assert send.status_code == 202, send.text
    digest_mail = smtp.wait_for(2)[-1]
    outbox_idle(services)
    with session_scope(services.engine) as session:
        session.add(
            BounceEvent(
                at=clock.now(),
                kind=BounceKind.soft,
                status="4.2.2",
                action="delayed",
                source="dsn",
                subscriber_id=subscriber_id,
                detail=BOUNCE_DETAIL,
            )
        )
    left = editor.post(
        link_in(digest_mail.message, "/unsubscribe/"),
        data={"List-Unsubscribe": "One-Click"},
        headers={"User-Agent": BROWSER},
    )
    assert left.status_code == 200
    return subscriber_id


def test_the_export_holds_every_kind_of_data_about_the_reader(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    subscriber_id = reader_with_a_history(editor, services, smtp, clock)

    held = export(editor, subscriber_id)

    assert (held["id"], held["email"], held["name"]) == (subscriber_id, READER, READER_NAME)
    assert held["erased"] is False and held["erased_at"] is None and held["created_at"]
    [news] = held["lists"]
    assert (news["slug"], news["status"], news["topics"]) == ("news", "unsubscribed", [])
    assert news["subscribed_at"] and news["confirmed_at"] and news["updated_at"]
    events = held["consent_events"]
    assert [e["action"] for e in events] == ["requested", "confirmed", "unsubscribed"]
    first = events[0]
    assert (first["source_url"], first["ip"], first["user_agent"]) == (ARTICLE, PEER_IP, BROWSER)
    assert first["consent_text"] and first["consent_version"] == 1 and first["form"] == "default"
    assert [e["prev_hash"] for e in events[1:]] == [e["hash"] for e in events[:-1]]
    assert held["consent_chain"] == {
        "valid": True,
        "events": 3,
        "first_bad_seq": None,
        "reason": "",
    }
    [confirmation] = held["confirmations"]
    assert confirmation["lists"] == ["news"] and confirmation["form"] == "default"
    assert confirmation["used_at"] is not None and confirmation["expires_at"]
    kinds = {m["kind"]: m for m in held["messages"]}
    assert set(kinds) == {"confirmation", "digest"}
    assert kinds["digest"]["send_id"] is not None and kinds["digest"]["list_slug"] == "news"
    assert all(m["status"] == "sent" and m["sent_at"] for m in held["messages"])
    assert all(m["last_reply"].startswith("250") for m in held["messages"])
    [bounce] = held["bounce_events"]
    assert (bounce["kind"], bounce["status"], bounce["detail"]) == ("soft", "4.2.2", BOUNCE_DETAIL)
    assert held["suppression"] is None


def test_delivery_attempts_and_the_suppression_are_in_the_export(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    smtp.handler.replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: User unknown"
    signed_up(editor, "gone@example.com")
    outbox_idle(services)

    held = export(editor, subscriber_id_of(editor, "gone@example.com"))

    [message] = held["messages"]
    assert message["status"] == "failed"
    assert [a["outcome"] for a in message["delivery_attempts"]] == ["failed"]
    assert "5.1.1" in message["delivery_attempts"][0]["reply"]
    assert held["suppression"]["reason"] == "hard-bounce"


def test_the_admin_download_is_the_same_document(
    signed_in: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    subscriber_id = reader_with_a_history(signed_in, services, smtp, clock)
    download = signed_in.get(f"/admin/subscribers/{subscriber_id}/export.json")
    assert download.status_code == 200
    assert download.json() == export(signed_in, subscriber_id)


def test_unknown_subscribers_are_404_to_export(editor: TestClient, client: TestClient) -> None:
    assert editor.get("/api/v1/subscribers/999999/export").status_code == 404
    client.headers.pop("Authorization", None)
    assert client.get("/api/v1/subscribers/1/export").status_code == 401


# ---- the command line ------------------------------------------------------------------


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    return operator_env(MAILER_DATABASE__URL=database_url, MAILER_SECRET_KEY=SECRET)


def test_show_prints_the_same_document_as_the_api(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    subscriber_id = reader_with_a_history(editor, services, smtp, clock)

    shown = mailer("subscribers", "show", " rita.reader@EXAMPLE.com", cwd=tmp_path, env=cli_env)

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == export(editor, subscriber_id)


def test_erasing_from_the_command_line_keeps_a_verifiable_chain_and_the_suppression(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    subscriber_id = reader_with_a_history(editor, services, smtp, clock)
    with session_scope(services.engine) as session:
        row = session.get(Subscriber, subscriber_id)
        assert row is not None
        suppression.suppress(session, row, SuppressionReason.complaint, "abuse report", clock.now())
    before = export(editor, subscriber_id)

    erased = mailer("subscribers", "erase", READER, "--yes", cwd=tmp_path, env=cli_env)

    assert erased.returncode == 0, erased.stderr
    assert READER not in erased.stdout + erased.stderr
    held = export(editor, subscriber_id)
    document = json.dumps(held)
    for personal in (READER, READER_NAME, PEER_IP, BROWSER, ARTICLE, "rita"):
        assert personal not in document, personal
    assert held["erased"] is True and held["email"].endswith("@erased.invalid")
    assert [e["action"] for e in held["consent_events"]] == [
        "requested",
        "confirmed",
        "unsubscribed",
        "erased",
    ]
    for old, kept in zip(before["consent_events"], held["consent_events"], strict=False):
        assert kept["hash"] == old["hash"]
        for field in ("ip", "user_agent", "source_url"):
            assert kept[field].startswith("sha256:"), field
    verified = editor.get(f"/api/v1/subscribers/{subscriber_id}/consent/verify").json()
    assert (verified["valid"], verified["events"]) == (True, 4)
    assert held["suppression"] is not None and held["suppression"]["reason"] == "complaint"

    clock.advance(minutes=61)
    signed_up(editor, READER)
    fresh_id = subscriber_id_of(editor)
    assert fresh_id != subscriber_id
    fresh = export(editor, fresh_id)
    assert [e["action"] for e in fresh["consent_events"]] == ["requested"]
    assert fresh["suppression"] is not None, "the suppression outlives the erasure"


def test_erase_refuses_an_unknown_address_and_asks_before_erasing(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    signed_up(editor, READER)
    outbox_idle(services)  # the confirmation is sent: nothing changes by itself from here
    subscriber_id = subscriber_id_of(editor)
    held_before = count_rows(services, Subscriber), export(editor, subscriber_id)

    unknown = mailer(
        "subscribers", "erase", "nobody@example.com", "--yes", cwd=tmp_path, env=cli_env
    )
    assert unknown.returncode == 2
    assert "no subscriber has that address" in unknown.stderr
    assert "nobody@example.com" not in unknown.stderr and "Traceback" not in unknown.stderr
    malformed = mailer("subscribers", "show", "not an address", cwd=tmp_path, env=cli_env)
    assert malformed.returncode == 2 and "not a valid address" in malformed.stderr

    declined = subprocess.run(
        [*MAILER, "subscribers", "erase", READER],
        cwd=tmp_path,
        env=cli_env,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert declined.returncode == 2 and "not erased" in declined.stderr

    assert (count_rows(services, Subscriber), export(editor, subscriber_id)) == held_before


# ---- imports and the suppression list --------------------------------------------------


def test_an_import_never_re_adds_a_suppressed_address(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    smtp.handler.replies["bounced@example.com"] = "550 5.1.1 <bounced@example.com>: unknown"
    signed_up(editor, "bounced@example.com")  # still on file, suppressed by the relay's 550
    signed_up(editor, "complained@example.com")  # suppressed, then erased
    outbox_idle(services)
    complained_id = subscriber_id_of(editor, "complained@example.com")
    with session_scope(services.engine) as session:
        row = session.get(Subscriber, complained_id)
        assert row is not None
        suppression.suppress(session, row, SuppressionReason.complaint, "abuse", clock.now())
    assert editor.post(f"/api/v1/subscribers/{complained_id}/erase").status_code == 200
    rows_before = {
        model: count_rows(services, model) for model in (Subscriber, Subscription, ConsentEvent)
    }
    source = tmp_path / "readers.csv"
    source.write_text("email\nbounced@example.com\nnew@example.com\ncomplained@example.com\n")

    result = mailer(
        "subscribers", "import", str(source), "--list", "news", cwd=tmp_path, env=cli_env
    )

    assert result.returncode == 0, result.stderr
    assert "imported 1" in result.stdout and "skipped 2" in result.stdout
    assert "line 2: skipped: suppressed (hard-bounce)" in result.stderr
    assert "line 4: skipped: suppressed (complaint)" in result.stderr
    assert count_rows(services, Subscriber) == rows_before[Subscriber] + 1, "only new@"
    assert count_rows(services, Subscription) == rows_before[Subscription] + 1
    assert count_rows(services, ConsentEvent) == rows_before[ConsentEvent] + 1
    assert (
        editor.get("/api/v1/subscribers", params={"email": "complained@example.com"}).json() == []
    )
    [bounced] = editor.get("/api/v1/subscribers", params={"email": "bounced@example.com"}).json()
    assert [(item["slug"], item["status"]) for item in bounced["lists"]] == [("news", "pending")]
