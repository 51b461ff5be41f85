"""Messages on the wire: header encoding, escaping, and the bulk fast path (a prepared
skeleton and bodies encoded once per send) reading back exactly as rendered."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, message_from_string, policy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.delivery.compose import escaped, personalize
from mailer.delivery.message import BulkMessageMaker
from mailer.delivery.render import RECIPIENT, RenderedMail, fill, recipient_values
from tests.conftest import SmtpSink

READER = "reader@example.com"


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


def test_bulk_messages_parse_back_to_what_was_rendered() -> None:
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
        # Raw UTF-8 in the To of a non-ASCII local part (RFC 6532), never encoded words.
        assert b"To: " + to.encode() + b"\r\n" in data
        parsed = message_from_string(data.decode(), policy=policy.default)
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


@pytest.mark.parametrize(
    "name",
    ["Ada", "", "Zoë = Ünïcødé ", "<b>&amp;</b> " * 20, "x" * 200],
    ids=["plain", "empty", "non-ascii-and-equals", "markup", "long"],
)
def test_a_body_encoded_once_reads_back_like_one_rendered_per_recipient(name: str) -> None:
    maker = BulkMessageMaker("News", "news@example.org", "example.org", {})
    line = "Grüße, = and =_ " * 9
    leave = RECIPIENT.unsubscribe_url
    text = f"Hello {RECIPIENT.name},\n{line}{RECIPIENT.name}{line}\nLeave: {leave}\n"
    html = f"<p>Hello {RECIPIENT.name}</p><p>{line}</p><a href='{RECIPIENT.unsubscribe_url}'>x</a>"
    mail = RenderedMail(subject="Morning Brief", text=text, html=html)
    values = {
        "name": name,
        "email": READER,
        "unsubscribe_url": "https://news.example.org/unsubscribe/" + "T0k3n" * 30,
    }
    expected = personalize(mail, values)
    now = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    data = maker.build_prepared(
        READER, expected.subject, maker.prepare(mail), values, escaped(values), now, []
    )
    body = data.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 76 for line in body.split(b"\r\n")), "quoted-printable lines"
    parsed = message_from_bytes(data, policy=policy.default)
    plain = parsed.get_body(preferencelist=("plain",)).get_content()
    assert plain.replace("\r\n", "\n") == expected.text
    rich = parsed.get_body(preferencelist=("html",)).get_content()
    assert rich.replace("\r\n", "\n").rstrip("\n") == expected.html


def test_a_greeting_reads_well_with_and_without_a_name() -> None:
    template = f"Hello{RECIPIENT.greeting_name}, here is the latest."
    anna = recipient_values("https://example.org/u/x", "Anna", "anna@example.org")
    nameless = recipient_values("https://example.org/u/y", "", "reader@example.org")
    assert fill(template, anna) == "Hello Anna, here is the latest."
    assert fill(template, nameless) == "Hello, here is the latest."
    maker = BulkMessageMaker("News", "news@example.org", "example.org", {})
    mail = RenderedMail(subject="News", text=template, html=f"<p>{template}</p>")
    now = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    data = maker.build_prepared(
        "reader@example.org", "News", maker.prepare(mail), nameless, escaped(nameless), now, []
    )
    parsed = message_from_bytes(data, policy=policy.default)
    plain = parsed.get_body(preferencelist=("plain",)).get_content()
    assert plain.strip() == "Hello, here is the latest."
