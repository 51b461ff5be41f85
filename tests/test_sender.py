"""The sender against a real SMTP relay: retries, final refusals, outages, the message itself."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.delivery import message
from mailer.delivery.render import RenderedMail
from mailer.delivery.transport import MaildirTransport
from mailer.models import OutboxMessage
from mailer.services import Services
from tests.conftest import SmtpSink, link_in, outbox_idle
from tests.factories import READER, signed_up


@dataclass
class Row:
    status: str
    attempts: int
    last_reply: str
    next_attempt_at: datetime


def the_row(services: Services) -> Row:
    """The only outbox row: the reader's confirmation mail."""
    with session_scope(services.engine) as session:
        [row] = session.exec(select(OutboxMessage)).all()
        due = row.next_attempt_at
        return Row(
            row.status,
            row.attempts,
            row.last_reply,
            due if due.tzinfo else due.replace(tzinfo=UTC),
        )


def wait_for_row(services: Services, timeout: float = 10, **expected: Any) -> Row:
    deadline = time.monotonic() + timeout
    while True:
        row = the_row(services)
        if all(getattr(row, key) == value for key, value in expected.items()):
            return row
        assert time.monotonic() < deadline, f"row is {row}, expected {expected}"
        time.sleep(0.02)


def settle() -> None:
    """Long enough for an idle sender (polling every 0.05 s) to look several times."""
    time.sleep(0.4)


# ---- outcomes -------------------------------------------------------------------------


@pytest.mark.both_databases
def test_a_451_keeps_the_mail_queued_and_it_arrives_once_after_the_backoff(
    client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    smtp.handler.replies[READER] = "451 4.3.0 try again later"
    signed_up(client, form="default")
    row = wait_for_row(services, status="queued", attempts=1)
    assert "451" in row.last_reply and "try again later" in row.last_reply
    assert row.next_attempt_at > clock.now(), "the retry waits for a backoff"

    settle()
    assert smtp.messages == []
    assert the_row(services).attempts == 1, "no retry before the backoff is over"

    del smtp.handler.replies[READER]
    clock.advance(seconds=(row.next_attempt_at - clock.now()).total_seconds() + 1)
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == [READER]
    wait_for_row(services, status="sent", attempts=2)

    clock.advance(hours=1)
    settle()
    outbox_idle(services)
    assert len(smtp.to(READER)) == 1, "delivered exactly once"


@pytest.mark.both_databases
def test_each_temporary_refusal_doubles_the_wait(
    client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    smtp.handler.replies[READER] = "421 4.7.0 too busy, slow down"
    signed_up(client, form="default")
    first = wait_for_row(services, status="queued", attempts=1)
    first_wait = first.next_attempt_at - clock.now()

    clock.advance(seconds=first_wait.total_seconds())
    second = wait_for_row(services, status="queued", attempts=2)
    second_wait = second.next_attempt_at - clock.now()
    assert second_wait == 2 * first_wait

    clock.advance(seconds=second_wait.total_seconds() / 2)
    settle()
    assert the_row(services).attempts == 2, "the relay is not hammered"
    assert smtp.messages == []


@pytest.mark.both_databases
def test_a_550_fails_the_mail_for_good_and_keeps_the_reply(
    client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    smtp.handler.replies[READER] = "550 5.1.1 no such user"
    signed_up(client, form="default")
    row = wait_for_row(services, status="failed")
    assert row.attempts == 1
    assert "550" in row.last_reply and "5.1.1 no such user" in row.last_reply

    del smtp.handler.replies[READER]
    clock.advance(days=2)
    settle()
    assert the_row(services).status == "failed"
    assert the_row(services).attempts == 1, "a final refusal is not retried"
    assert smtp.messages == []


@pytest.mark.both_databases
def test_a_relay_that_is_down_defers_the_mail_without_losing_it(
    client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    smtp.stop()
    signed_up(client, form="default")
    row = wait_for_row(services, status="queued", attempts=1)
    assert "connection" in row.last_reply.lower()
    settle()
    assert the_row(services).attempts == 1

    smtp.start()  # a new server on the same port: the relay is back
    clock.advance(seconds=(row.next_attempt_at - clock.now()).total_seconds() + 1)
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == [READER]
    wait_for_row(services, status="sent", attempts=2)
    settle()
    assert len(smtp.messages) == 1


# ---- the message on the wire ----------------------------------------------------------


def test_the_confirmation_mail_is_a_well_formed_message(
    client: TestClient, smtp: SmtpSink, clock: FrozenClock
) -> None:
    signed_up(client, form="default")
    [mail] = smtp.wait_for(1)
    raw = mail.data
    parsed = mail.message

    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert len(parsed.get_all(header, [])) == 1, f"exactly one {header}"
    assert parsed["From"].addresses[0].addr_spec == "news@example.org"
    assert parsed["From"].addresses[0].display_name == "Example News"
    assert parsed["To"].addresses[0].addr_spec == READER
    assert parsed["Subject"].strip()
    assert abs((parsedate_to_datetime(parsed["Date"]) - clock.now()).total_seconds()) < 1
    message_id = parsed["Message-ID"]
    assert message_id.startswith("<") and message_id.endswith("@example.org>")

    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"], (
        "plain text first, HTML last: clients show the last part they understand"
    )
    assert raw.isascii(), "no 8-bit data for relays without 8BITMIME"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "RFC 5322 line limit"

    confirm_path = link_in(parsed, "/confirm/")
    html = parts[1].get_content()
    assert f"http://testserver{confirm_path}" in html
    assert f"http://testserver{confirm_path}" in parts[0].get_content()


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {"mail": {"from_name": "Zürcher Café-Zeitung"}},
        {"mail": {"from_name": 'Die "Wochenpost", Köln'}},
    ],
    indirect=True,
    ids=["umlauts", "quotes-and-comma"],
)
def test_a_non_ascii_display_name_in_from_is_encoded_and_reads_back(
    client: TestClient, smtp: SmtpSink, settings_overrides: dict[str, Any]
) -> None:
    signed_up(client, form="default")
    [mail] = smtp.wait_for(1)
    head = mail.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii(), "header values are RFC 2047 encoded"
    [sender] = mail.message["From"].addresses
    assert sender.display_name == settings_overrides["mail"]["from_name"]
    assert sender.addr_spec == "news@example.org"


# ---- the Maildir transport ------------------------------------------------------------


def test_the_maildir_transport_writes_complete_eml_files_into_new(tmp_path: Path) -> None:
    long_text = "Grüße aus der Redaktion.\n" + "A long paragraph of news. " * 4000
    data = message.build(
        from_name="Example News",
        from_address="news@example.org",
        to_address=READER,
        mail=RenderedMail(subject="Please confirm", text=long_text, html=f"<p>{long_text}</p>"),
        now=datetime(2026, 11, 24, 7, 0, tzinfo=UTC),
        msgid_domain="example.org",
    )
    outbox = tmp_path / "outbox"
    transport = MaildirTransport(outbox)

    async def deliver_two() -> list[str]:
        return [
            await transport.send("bounces@example.org", READER, data),
            await transport.send("bounces@example.org", "other@example.com", data),
        ]

    replies = asyncio.run(deliver_two())
    assert all(reply.startswith("250") for reply in replies)
    written = sorted((outbox / "new").glob("*.eml"))
    assert len(written) == 2, "one file per message, never overwritten"
    assert list((outbox / "tmp").iterdir()) == [], "nothing half-written is left behind"

    content = written[0].read_bytes()
    assert content.endswith(data), "the whole message, byte for byte"
    parsed = message_from_bytes(content, policy=policy.default)
    assert parsed["Return-Path"] == "<bounces@example.org>"
    assert parsed["Subject"] == "Please confirm"
    plain = parsed.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip() == long_text.rstrip()
