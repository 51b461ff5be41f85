"""International addresses on the wire: an ASCII local part goes out with its domain in
IDNA form (no SMTPUTF8 needed), a non-ASCII one as raw UTF-8 with SMTPUTF8 or fails
clearly, and no header address is ever written as RFC 2047 encoded words."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailer.db import session_scope
from mailer.models import OutboxMessage, OutboxStatus
from mailer.services import Services
from tests.conftest import Received, SmtpSink, outbox_idle


@pytest.fixture
def smtp(request: pytest.FixtureRequest) -> Iterator[SmtpSink]:
    """The relay, without SMTPUTF8 unless a test asks for it (indirect parameter True)."""
    sink = SmtpSink(smtputf8=bool(getattr(request, "param", False)))
    sink.start()
    yield sink
    sink.stop()


def header_line(mail: Received, name: str) -> bytes:
    """The raw bytes of one header field, unfolded."""
    head = mail.data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    [line] = [item for item in head.split(b"\r\n") if item.lower().startswith(name.lower() + b":")]
    return line


def confirmation_to(client: TestClient, services: Services, smtp: SmtpSink, email: str) -> Received:
    assert client.post("/subscribe", json={"email": email}).status_code == 202
    outbox_idle(services)
    [mail] = smtp.messages
    return mail


@pytest.mark.parametrize(
    ("typed", "wire"),
    [
        ("Reader@Éxample.org", "Reader@xn--xample-9ua.org"),
        ("reader@bücher.example", "reader@xn--bcher-kva.example"),
        ("ana@münchen.de", "ana@xn--mnchen-3ya.de"),
        ("x@日本.jp", "x@xn--wgv71a.jp"),
    ],
)
def test_an_ascii_local_part_goes_out_with_an_idna_domain_and_no_smtputf8(
    client: TestClient, services: Services, smtp: SmtpSink, typed: str, wire: str
) -> None:
    mail = confirmation_to(client, services, smtp, typed)

    assert mail.rcpt_tos == [wire]
    assert "SMTPUTF8" not in [option.upper() for option in mail.mail_options]
    assert header_line(mail, b"To") == b"To: " + wire.encode()
    assert mail.message["To"].addresses[0].addr_spec == wire


@pytest.mark.parametrize("smtp", [True], indirect=True)
@pytest.mark.parametrize("typed", ["üser@example.org", "Zoë@bücher.example", "用户@例子.广告"])
def test_a_non_ascii_local_part_goes_out_as_utf8_with_smtputf8(
    client: TestClient, services: Services, smtp: SmtpSink, typed: str
) -> None:
    mail = confirmation_to(client, services, smtp, typed)

    assert mail.rcpt_tos == [typed]
    assert "SMTPUTF8" in [option.upper() for option in mail.mail_options]
    to = header_line(mail, b"To")
    assert to == b"To: " + typed.encode()
    assert b"=?" not in to


@pytest.mark.parametrize("typed", ["üser@example.org", "Zoë@bücher.example"])
def test_a_non_ascii_local_part_fails_clearly_on_a_relay_without_smtputf8(
    client: TestClient, services: Services, smtp: SmtpSink, typed: str
) -> None:
    assert client.post("/subscribe", json={"email": typed}).status_code == 202
    outbox_idle(services)

    assert smtp.messages == []
    with session_scope(services.engine) as session:
        [row] = session.scalars(select(OutboxMessage))
    assert row.status == OutboxStatus.failed
    assert "SMTPUTF8" in row.last_reply
    # The relay still works for the next reader.
    assert client.post("/subscribe", json={"email": "next@example.org"}).status_code == 202
    outbox_idle(services)
    assert [mail.rcpt_tos for mail in smtp.messages] == [["next@example.org"]]


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "mail": {
                "from_address": "news@nachrichten-bücher.example",
                "reply_to": "desk@bücher.example",
            }
        }
    ],
    indirect=True,
)
def test_the_from_and_reply_to_addresses_from_the_settings_go_out_in_idna_form(
    client: TestClient, services: Services, smtp: SmtpSink
) -> None:
    mail = confirmation_to(client, services, smtp, "reader@example.org")

    from_line = header_line(mail, b"From")
    assert b"news@xn--nachrichten-bcher-f3b.example" in from_line
    assert not re.search(rb"=\?[^?]+\?[bqBQ]\?[^?]*\?=@|@=\?", from_line)
    assert header_line(mail, b"Reply-To") == b"Reply-To: desk@xn--bcher-kva.example"
    assert mail.mail_from.isascii()
