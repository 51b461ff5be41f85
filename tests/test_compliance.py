"""CAN-SPAM in every digest: the sender's postal address and a visible unsubscribe link
that works at once, in the HTML and the text, even under an editor's own template."""

from __future__ import annotations

import re
from email.message import EmailMessage
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from mailer.services import Services
from tests.conftest import SmtpSink, outbox_idle
from tests.factories import article, confirm_readers, morning_brief, send_now

POSTAL_ADDRESS = "1 Press Street, Berlin"  # the shared settings fixture's
READERS = ["ada@example.com", "ben@example.org"]
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def unsubscribe_links(message: EmailMessage) -> tuple[str, str]:
    """The unsubscribe link a reader sees in the text and the one in the HTML (paths)."""
    text, html = parts(message)
    in_text = re.search(r"http://testserver(/unsubscribe/\S+)", text)
    in_html = re.search(r'<a href="http://testserver(/unsubscribe/[^"]+)"[^>]*>([^<]+)</a>', html)
    assert in_text and in_html, (text, html)
    assert "unsubscribe" in in_html.group(2).lower(), "the link says what it does"
    return in_text.group(1), in_html.group(1)


def digests_to(smtp: SmtpSink, address: str, name: str) -> list[EmailMessage]:
    return [m.message for m in smtp.to(address) if name in str(m.message["Subject"])]


def test_every_digest_shows_the_postal_address_and_an_unsubscribe_link_that_works_at_once(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS)
    article(editor, clock, 1, ["world"])
    digest = morning_brief(editor)
    send_now(editor, digest["id"])
    outbox_idle(services)
    [first] = digests_to(smtp, READERS[0], "Morning Brief")
    text, html = parts(first)
    assert POSTAL_ADDRESS in text and POSTAL_ADDRESS in html
    in_text, in_html = unsubscribe_links(first)
    assert in_text == in_html

    left = editor.post(in_html, data=ONE_CLICK, follow_redirects=False)
    assert left.status_code == 200

    clock.advance(hours=1)
    article(editor, clock, 2, ["health"], hours_ago=0.5)
    send_now(editor, digest["id"])
    outbox_idle(services)
    assert len(digests_to(smtp, READERS[1], "Morning Brief")) == 2
    assert len(digests_to(smtp, READERS[0], "Morning Brief")) == 1, "the next send skips her"


def test_an_editors_own_template_without_the_footer_still_carries_it(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS[:1])
    article(editor, clock, 1, ["world"], title="Talks resume")
    digest = morning_brief(
        editor,
        html_template=(
            "<html><body><h1>{{ digest.name }}</h1>{% for a in articles %}"
            '<p><a href="{{ a.url }}">{{ a.title }}</a></p>{% endfor %}</body></html>'
        ),
        text_template="{% for a in articles %}{{ a.title }}: {{ a.url }}\n{% endfor %}",
    )
    preview = editor.get(f"/api/v1/digests/{digest['id']}/preview").json()
    assert "Unsubscribe" in preview["html"] and POSTAL_ADDRESS in preview["text"]

    send_now(editor, digest["id"])
    outbox_idle(services)
    [mail] = digests_to(smtp, READERS[0], "Morning Brief")
    text, html = parts(mail)
    assert "Talks resume" in text and "Talks resume" in html, "the editor's body is kept"
    assert POSTAL_ADDRESS in text and POSTAL_ADDRESS in html
    assert html.index("Talks resume") < html.index(POSTAL_ADDRESS) < html.index("</body>")
    _, in_html = unsubscribe_links(mail)
    assert editor.post(in_html, data=ONE_CLICK).status_code == 200
    status = editor.get("/api/v1/subscribers", params={"email": READERS[0]}).json()
    assert status[0]["lists"][0]["status"] == "unsubscribed"
    assert urlsplit(str(mail["List-Unsubscribe"]).split(",")[0].strip("<> ")).path == in_html


def test_an_editors_template_that_has_its_own_footer_gets_no_second_one(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS[:1])
    article(editor, clock, 1, ["world"])
    digest = morning_brief(
        editor,
        text_template=(
            "{% for a in articles %}{{ a.title }}\n{% endfor %}\n"
            "Leave: {{ recipient.unsubscribe_url }}\n{{ postal_address }}"
        ),
    )
    send_now(editor, digest["id"])
    outbox_idle(services)
    [mail] = digests_to(smtp, READERS[0], "Morning Brief")
    text, html = parts(mail)
    assert text.count("/unsubscribe/") == 1 and text.count(POSTAL_ADDRESS) == 1
    assert html.count(POSTAL_ADDRESS) == 1, "the default HTML has its footer once"
