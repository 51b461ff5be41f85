"""Delivery of queued mail: SMTP outcomes, retries, message format, the Maildir transport."""

from __future__ import annotations

import asyncio
import re
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from mailer.clock import FrozenClock
from mailer.delivery.transport import MaildirTransport
from mailer.services import Services
from tests.conftest import SmtpSink, link_in, outbox_idle

READER = "reader@example.com"


def outbox_row(services: Services) -> dict[str, Any]:
    with services.engine.connect() as conn:
        [row] = conn.execute(text("SELECT status, attempts, last_reply FROM outbox")).mappings()
    return dict(row)


def wait_for_row(services: Services, **expected: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        row = outbox_row(services)
        if all(row[k] == v for k, v in expected.items()):
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.02)


def test_a_temporary_refusal_is_retried_after_a_backoff(
    client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    smtp.handler.replies[READER] = "451 4.3.0 Try again later"
    client.post("/subscribe", json={"email": READER})
    row = wait_for_row(services, attempts=1, status="queued")
    assert "451" in row["last_reply"]
    time.sleep(0.3)
    assert smtp.messages == [] and outbox_row(services)["attempts"] == 1, "waits for the backoff"

    del smtp.handler.replies[READER]
    clock.advance(seconds=2)
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == [READER]
    wait_for_row(services, status="sent", attempts=2)
    outbox_idle(services)
    assert len(smtp.messages) == 1


def test_a_permanent_refusal_fails_for_good(
    client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    smtp.handler.replies[READER] = "550 5.1.1 No such user"
    client.post("/subscribe", json={"email": READER})
    row = wait_for_row(services, status="failed")
    assert row["attempts"] == 1
    assert "550 5.1.1" in row["last_reply"]
    clock.advance(hours=1)
    time.sleep(0.3)
    assert outbox_row(services)["attempts"] == 1 and smtp.messages == []


def test_a_relay_that_is_down_delays_mail_without_losing_it(
    client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    smtp.stop()
    client.post("/subscribe", json={"email": READER})
    row = wait_for_row(services, status="queued", attempts=1)
    assert "connection" in row["last_reply"]
    smtp.start()
    clock.advance(seconds=2)
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == [READER]


def test_the_confirmation_message_is_well_formed(
    client: TestClient, smtp: SmtpSink, services: Services
) -> None:
    client.post("/subscribe", json={"email": READER})
    [mail] = smtp.wait_for(1)
    assert mail.mail_from == "news@example.org"
    message = mail.message
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert len(message.get_all(header, [])) == 1, header
    assert message["To"] == READER
    assert message["From"] == "Example News <news@example.org>"
    assert re.fullmatch(r"<[^@>]+@example\.org>", message["Message-ID"])
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert all(len(line) <= 998 for line in mail.data.split(b"\r\n"))
    link = link_in(message, "/confirm/")
    html = message.get_body(preferencelist=("html",)).get_content()
    assert f'href="http://testserver{link}"' in html
    assert 'style="display: inline-block' in html, "CSS is inlined"
    text_part = message.get_body(preferencelist=("plain",)).get_content()
    assert "1 Press Street, Berlin" in text_part


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


@pytest.mark.parametrize(
    "settings_overrides",
    [{"mail": {"from_name": "Zürich Café Zeitung", "site_name": "Café <News>"}}],
    indirect=True,
)
def test_non_ascii_names_are_encoded_and_markup_is_escaped(
    client: TestClient, smtp: SmtpSink
) -> None:
    client.post("/subscribe", json={"email": READER})
    [mail] = smtp.wait_for(1)
    assert b"Z\xc3\xbcrich" not in mail.data.split(b"\r\n\r\n")[0], "headers stay 7-bit"
    assert mail.message["From"].addresses[0].display_name == "Zürich Café Zeitung"
    html = mail.message.get_body(preferencelist=("html",)).get_content()
    assert "Café &lt;News&gt;" in html


def test_maildir_transport_writes_complete_eml_files(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "outbox")
    data = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    reply = asyncio.run(transport.send("a@example.org", "b@example.org", data))
    [written] = list((tmp_path / "outbox" / "new").glob("*.eml"))
    assert reply.startswith("250")
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []
    parsed = message_from_bytes(written.read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "hi"
    assert parsed["Return-Path"] == "<a@example.org>"


def test_bulk_messages_parse_back_to_what_was_rendered() -> None:
    from datetime import UTC, datetime

    from mailer.delivery.message import BulkMessageMaker
    from mailer.delivery.render import RenderedMail

    maker = BulkMessageMaker(
        "Zürich Zeitung", "news@example.org", "example.org", {"Precedence": "bulk"}
    )
    html = "<p>" + "Grüße aus Zürich, = and =_ and --boundary " * 60 + "</p>\n<p>end</p>"
    text = "Line one\nLigne deux: déjà vu\n" + "x" * 300 + "\n"
    now = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    headers = [("List-Id", ["<news.example.org>"])]
    for to, subject in [
        ("reader@example.com", "Morning Brief"),
        ("reader@example.com", "Frühstück"),
        ("jürgen@bücher.example", "Morning Brief"),
    ]:
        data = maker.build(to, RenderedMail(subject=subject, text=text, html=html), now, headers)
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))
        parsed = message_from_bytes(data, policy=policy.default)
        assert parsed["Subject"] == subject
        assert parsed["To"] == to
        assert parsed["From"].addresses[0].display_name == "Zürich Zeitung"
        assert parsed["List-Id"] == "<news.example.org>"
        assert len(parsed.get_all("Message-ID")) == 1
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
        plain = parsed.get_body(preferencelist=("plain",)).get_content()
        assert plain.replace("\r\n", "\n") == text
        rich = parsed.get_body(preferencelist=("html",)).get_content()
        assert rich.replace("\r\n", "\n").rstrip("\n") == html
