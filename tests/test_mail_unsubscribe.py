"""Leaving by mail: the List-Unsubscribe mailto address, answered as a mail client would."""

from __future__ import annotations

from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from fastapi.testclient import TestClient

from mailer import mailboxes
from mailer.bounces.listener import BounceListener
from mailer.clock import SystemClock
from mailer.db import session_scope
from mailer.services import Services
from mailer.subscriptions.mail_unsubscribe import unsubscribe_by_mail
from tests.bounces import deliver
from tests.conftest import SmtpSink
from tests.factories import add_readers, send_digest, wait_done


@pytest.fixture
def clock() -> SystemClock:  # type: ignore[override]
    return SystemClock()


def _reply_to_mailto(received: EmailMessage, sender: str) -> bytes:
    """The message a mail client sends for the header's mailto: URI."""
    mailto = next(
        part.strip(" <>")
        for part in str(received["List-Unsubscribe"]).split(",")
        if part.strip(" <>").startswith("mailto:")
    )
    target = urlsplit(mailto)
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = unquote(target.path)
    reply["Subject"] = parse_qs(target.query)["subject"][0]
    reply.set_content("")
    return reply.as_bytes()


def test_mailing_the_list_unsubscribe_address_unsubscribes_at_once(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, ["leaver@example.com", "stayer@example.com"])
    first = wait_done(editor, send_digest(editor, story=1))
    assert first["sent"] == 2
    [received] = smtp.to("leaver@example.com")
    # Sent from another address than the subscribed one: only the signed token counts.
    reply = _reply_to_mailto(received.message, "someone-else@example.org")
    with session_scope(services.engine) as session:
        assert unsubscribe_by_mail(session, reply, services.signer, services.clock.now()) == [
            "news"
        ]
    [found] = editor.get("/api/v1/subscribers", params={"email": "leaver@example.com"}).json()
    assert found["lists"][0]["status"] == "unsubscribed"
    assert found["consent_events"][-1]["form"] == "mailto"

    digest_id = int(editor.get(f"/api/v1/sends/{first['id']}").json()["digest_id"])
    second = wait_done(editor, send_digest(editor, story=2, digest_id=digest_id))
    assert second["total"] == 1
    assert len(smtp.to("leaver@example.com")) == 1, "no later digest reaches the leaver"


def test_a_mail_without_a_valid_token_changes_nothing(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, ["reader@example.com"])
    wait_done(editor, send_digest(editor, story=1))
    [received] = smtp.to("reader@example.com")
    good = _reply_to_mailto(received.message, "reader@example.com").decode()
    token = good.split("unsubscribe ", 1)[1].split("\n", 1)[0].strip()
    forged = good.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    with session_scope(services.engine) as session:
        now = services.clock.now()
        assert unsubscribe_by_mail(session, forged.encode(), services.signer, now) == []
        plain = b"From: x@example.org\r\nSubject: please remove me\r\n\r\nthanks\r\n"
        assert unsubscribe_by_mail(session, plain, services.signer, now) == []
    [found] = editor.get("/api/v1/subscribers", params={"email": "reader@example.com"}).json()
    assert found["lists"][0]["status"] == "confirmed"


def test_the_listener_takes_mail_to_the_unsubscribe_mailbox(
    editor: TestClient, services: Services, smtp: SmtpSink, listener: BounceListener
) -> None:
    add_readers(services, ["by-mail@example.com"])
    wait_done(editor, send_digest(editor, story=1))
    [received] = smtp.to("by-mail@example.com")
    reply = _reply_to_mailto(received.message, "by-mail@example.com")
    mailbox = mailboxes.unsubscribe_mailbox(services.settings)
    answer = deliver(listener, reply, [mailbox], sender="by-mail@example.com")
    assert answer[1].startswith("OK")
    [found] = editor.get("/api/v1/subscribers", params={"email": "by-mail@example.com"}).json()
    assert found["lists"][0]["status"] == "unsubscribed"
    assert listener.handler.intake.counts["unsubscribed"] == 1
