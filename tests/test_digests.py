"""Digests end to end: articles in, a digest defined, sent, read, left with one click."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from mailer import config
from mailer.clock import FrozenClock
from mailer.content.schedules import next_runs
from mailer.db import session_scope
from mailer.jobs import run_due_digests
from mailer.models import Digest, Send
from mailer.services import Services, build
from mailer.tokens import Purpose
from tests.conftest import SmtpSink, count_rows, link_in, outbox_idle
from tests.factories import (
    READERS,
    article,
    confirm_readers,
    morning_brief,
    send_now,
    wait_until_retrying,
)


def digests_received(smtp: SmtpSink) -> list[EmailMessage]:
    return [m.message for m in smtp.messages if "List-Id" in m.message]


@pytest.mark.both_databases
def test_articles_are_created_once_and_updated_by_url(
    editor: TestClient, clock: FrozenClock
) -> None:
    first = article(editor, clock, 1, ["World"])
    again = editor.post(
        "/api/v1/articles",
        json={
            "url": first["url"],
            "title": "Story 1, updated",
            "topics": ["World", "Europe"],
            "published_at": first["published_at"],
        },
    )
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.json()["topics"] == ["world", "europe"]
    listed = editor.get("/api/v1/articles", params={"topic": "europe"}).json()
    assert [a["title"] for a in listed] == ["Story 1, updated"]
    bad = editor.post(
        "/api/v1/articles",
        json={"url": "ftp://x/y", "title": "t", "published_at": "2026-01-01T00:00:00Z"},
    )
    assert bad.status_code == 422


@pytest.mark.both_databases
def test_a_digest_goes_to_every_confirmed_reader_and_one_click_unsubscribes(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS)
    article(editor, clock, 1, ["world"], title="Talks <b>resume</b> & continue")
    article(editor, clock, 2, ["health"])
    article(editor, clock, 3, ["sport"])  # not in the digest's topics
    digest = morning_brief(editor)

    send = send_now(editor, digest["id"])
    assert send["status"] == "queued" and send["total"] == 2
    smtp.wait_for(4)
    outbox_idle(services)
    progress = editor.get(f"/api/v1/sends/{send['id']}").json()
    assert {k: progress[k] for k in ("status", "total", "sent", "failed", "pending")} == {
        "status": "done",
        "total": 2,
        "sent": 2,
        "failed": 0,
        "pending": 0,
    }

    received = digests_received(smtp)
    assert sorted(m["To"] for m in received) == sorted(READERS)
    message = next(m for m in received if m["To"] == READERS[0])
    for header in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ):
        assert len(message.get_all(header, [])) == 1, header
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "<news.example.org>"
    unsubscribe_targets = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    assert unsubscribe_targets[0].startswith("http://testserver/unsubscribe/")
    assert unsubscribe_targets[1].startswith("mailto:")
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    raw = next(m.data for m in smtp.messages if READERS[0] in m.rcpt_tos and b"List-Id" in m.data)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))

    html = message.get_body(preferencelist=("html",)).get_content()
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Talks &lt;b&gt;resume&lt;/b&gt; &amp; continue" in html
    assert "<b>resume</b>" not in html
    assert "Story 2" in html and "Story 3" not in html
    assert 'href="https://news.example.com/story-1"' in html
    assert "1 Press Street, Berlin" in text and "Unsubscribe" in text
    assert unsubscribe_targets[0] in text, "the visible link is the reader's own"

    one_click = editor.post(
        unsubscribe_targets[0].removeprefix("http://testserver"),
        data={"List-Unsubscribe": "One-Click"},
        follow_redirects=False,
    )
    assert one_click.status_code == 200
    [ada] = editor.get("/api/v1/subscribers", params={"email": READERS[0]}).json()
    assert ada["lists"][0]["status"] == "unsubscribed"

    clock.advance(hours=1)
    article(editor, clock, 4, ["world"], hours_ago=0.5)
    second = send_now(editor, digest["id"])
    assert second["total"] == 1, "the reader who left is not queued"
    smtp.wait_for(5)
    latest = digests_received(smtp)[-1]
    assert latest["To"] == READERS[1]
    latest_html = latest.get_body(preferencelist=("html",)).get_content()
    assert "Story 4" in latest_html and "Story 1" not in latest_html, "only the new article"

    clock.advance(hours=1)
    third = send_now(editor, digest["id"])
    assert third["status"] == "skipped"
    assert "no new articles" in third["reason"]
    assert editor.get(f"/api/v1/sends/{third['id']}").json()["status"] == "skipped"


@pytest.mark.both_databases
def test_a_reader_who_leaves_after_the_send_starts_gets_nothing(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS[:1])
    article(editor, clock, 1, ["world"])
    digest = morning_brief(editor)
    smtp.stop()  # hold the send in the outbox
    send = send_now(editor, digest["id"])
    wait_until_retrying(services, send["id"], 1)
    [ada] = editor.get("/api/v1/subscribers", params={"email": READERS[0]}).json()
    token = services.signer.sign(Purpose.unsubscribe, {"s": ada["id"]})
    editor.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    smtp.start()
    clock.advance(seconds=5)
    outbox_idle(services)
    progress = editor.get(f"/api/v1/sends/{send['id']}").json()
    assert progress["sent"] == 0 and progress["dropped"] == 1
    assert digests_received(smtp) == []


def test_an_editors_stylesheet_link_is_never_fetched_while_rendering(
    editor: TestClient, clock: FrozenClock
) -> None:
    fetched: list[str] = []

    class Stylesheets(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            fetched.append(self.path)
            body = b"p { color: red }"
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stylesheets)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"http://127.0.0.1:{server.server_address[1]}"
        article(editor, clock, 1, ["world"])
        digest = morning_brief(
            editor,
            html_template=f'<html><head><link rel="stylesheet" href="{address}/a.css">'
            f'<link rel="stylesheet" type="text/css" href="{address}/b.css"></head>'
            "<body>{% for a in articles %}<p>{{ a.title }}</p>{% endfor %}</body></html>",
        )
        shown = editor.get(f"/api/v1/digests/{digest['id']}/preview")
    finally:
        server.shutdown()
        server.server_close()
    assert shown.status_code == 200, shown.text
    assert "Story 1" in shown.json()["html"]
    assert fetched == []


def test_preview_and_test_send_show_the_digest_without_sending_it(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    article(editor, clock, 1, ["health"])
    digest = morning_brief(editor)
    shown = editor.get(f"/api/v1/digests/{digest['id']}/preview").json()
    assert "Story 1" in shown["html"] and "Story 1" in shown["text"]
    assert [a["title"] for a in shown["articles"]] == ["Story 1"]
    tested = editor.post(
        f"/api/v1/digests/{digest['id']}/test", json={"addresses": ["editor@example.com"]}
    )
    assert tested.json() == {"sent": ["editor@example.com"], "failed": {}}
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == ["editor@example.com"]
    assert mail.message["Subject"].startswith("[TEST] Morning Brief")
    assert count_rows(services, Send) == 0, "a test send is not a send"


SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ digest.__class__.__init__.__globals__ }}",
    "{{ articles.append(1) }}",
]


@pytest.mark.parametrize("template", SANDBOX_ESCAPES)
def test_editor_templates_cannot_escape_the_sandbox(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock, template: str
) -> None:
    confirm_readers(editor, smtp, READERS[:1])
    article(editor, clock, 1, ["world"])
    digest = morning_brief(editor)
    # Stored directly, as if saved before templates were checked on saving (which now
    # refuses most of these): the sandbox still holds when the template renders.
    with session_scope(services.engine) as session:
        row = session.get(Digest, digest["id"])
        assert row is not None
        row.html_template = template
        session.add(row)
    assert editor.get(f"/api/v1/digests/{digest['id']}/preview").status_code == 422
    send = send_now(editor, digest["id"])
    assert send["status"] == "skipped" and "template" in send["reason"]
    assert digests_received(smtp) == []


def test_a_broken_template_is_refused_when_saved(editor: TestClient) -> None:
    answer = editor.post(
        "/api/v1/digests",
        json={
            "list": "news",
            "name": "Broken",
            "schedule": "0 7 * * *",
            "html_template": "{% for x in %}",
        },
    )
    assert answer.status_code == 422
    assert editor.get("/api/v1/digests").json() == []


@pytest.mark.parametrize(
    ("schedule", "timezone"),
    [("61 7 * * *", "UTC"), ("0 7 * *", "UTC"), ("0 7 * * *", "Mars/Olympus")],
)
def test_bad_schedules_are_refused(editor: TestClient, schedule: str, timezone: str) -> None:
    answer = editor.post(
        "/api/v1/digests",
        json={"list": "news", "name": "Bad", "schedule": schedule, "timezone": timezone},
    )
    assert answer.status_code == 422
    assert editor.get("/api/v1/digests").json() == []


def test_cron_follows_the_time_zone_across_a_dst_change() -> None:
    before = datetime(2026, 10, 23, 12, 0, tzinfo=UTC)  # Friday; DST ends Sunday 25th
    runs = next_runs("0 7 * * mon-fri", "Europe/Berlin", before, 3)
    assert runs == [
        datetime(2026, 10, 26, 6, 0, tzinfo=UTC),  # Monday 07:00 CET
        datetime(2026, 10, 27, 6, 0, tzinfo=UTC),
        datetime(2026, 10, 28, 6, 0, tzinfo=UTC),
    ]
    spring = next_runs("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert spring[0] < spring[1]
    assert spring[0].date().isoformat() in ("2026-03-29", "2026-03-30")
    assert next_runs("0 7 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 1) == [
        datetime(2026, 10, 25, 6, 0, tzinfo=UTC)
    ]  # the day of the change itself, CET


def test_the_digest_lists_its_next_five_runs(editor: TestClient) -> None:
    digest = morning_brief(editor)
    assert len(digest["next_runs"]) == 5
    first = datetime.fromisoformat(digest["next_runs"][0])
    assert first.astimezone(ZoneInfo("Europe/Berlin")).hour == 7


@pytest.mark.both_databases
def test_a_run_missed_while_down_is_sent_once_on_start(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS[:1])
    digest = morning_brief(editor)
    article(editor, clock, 1, ["world"])
    clock.advance(days=3)  # several 07:00 runs passed while nothing was running
    article(editor, clock, 2, ["world"])
    started = run_due_digests(services)
    assert len(started) == 1
    assert run_due_digests(services) == [], "no burst of repeats"
    with session_scope(services.engine) as session:
        stored = session.get(Digest, digest["id"])
        assert stored is not None and stored.next_run_at is not None
        assert stored.next_run_at > clock.now()
    smtp.wait_for(2)
    outbox_idle(services)
    assert len(digests_received(smtp)) == 1


@pytest.mark.both_databases
def test_two_schedulers_on_one_database_send_a_due_digest_once(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    settings: config.Settings,
) -> None:
    confirm_readers(editor, smtp, READERS)
    morning_brief(editor)
    clock.advance(days=1)
    article(editor, clock, 1, ["world"])
    other = build(settings, clock=clock)
    results: list[list[int]] = []
    barrier = threading.Barrier(2)

    def tick(instance: Services) -> None:
        barrier.wait()
        results.append(run_due_digests(instance))

    threads = [threading.Thread(target=tick, args=(s,)) for s in (services, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    other.engine.dispose()
    assert sorted(len(r) for r in results) == [0, 1]
    assert count_rows(services, Send) == 1
    smtp.wait_for(4)
    outbox_idle(services)
    assert sorted(m["To"] for m in digests_received(smtp)) == sorted(READERS)


@pytest.mark.both_databases
def test_two_sends_of_a_digest_at_the_same_instant_start_one_and_refuse_the_other(
    editor: TestClient, services: Services, clock: FrozenClock
) -> None:
    digest = morning_brief(editor)
    article(editor, clock, 1, ["world"])
    first = send_now(editor, digest["id"])
    second = editor.post(f"/api/v1/digests/{digest['id']}/send")
    assert second.status_code == 409, second.text
    assert "already started" in second.json()["detail"]
    assert count_rows(services, Send) == 1
    assert editor.get(f"/api/v1/sends/{first['id']}").status_code == 200
    clock.advance(seconds=1)
    article(editor, clock, 2, ["world"])
    assert editor.post(f"/api/v1/digests/{digest['id']}/send").status_code == 202


def test_sends_and_digests_need_a_key_and_exist(client: TestClient, editor: TestClient) -> None:
    assert editor.get("/api/v1/sends/999").status_code == 404
    assert editor.post("/api/v1/digests/999/send").status_code == 404
    editor.headers.pop("Authorization")
    assert client.get("/api/v1/sends/1").status_code == 401
    assert client.post("/api/v1/digests", json={}).status_code == 401


def test_a_list_with_a_welcome_mail_greets_each_new_reader_once(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    changed = editor.patch(
        "/api/v1/lists/news", json={"welcome_enabled": True, "welcome_articles": 2}
    )
    assert changed.status_code == 200 and changed.json()["welcome_enabled"] is True
    article(editor, clock, 1, ["world"], title="Latest <story>")
    confirm_readers(editor, smtp, READERS[:1])
    [_, welcome] = smtp.wait_for(2)
    message = welcome.message
    assert message["Subject"] == "Welcome to News"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Latest &lt;story&gt;" in html
    [confirm_mail] = [m for m in smtp.messages if "/confirm/" in m.data.decode()]
    editor.post(link_in(confirm_mail.message, "/confirm/"))  # again: already confirmed
    outbox_idle(services)
    assert len(smtp.messages) == 2, "one welcome only"


def test_the_public_archive_shows_past_digests_without_personal_parts(
    editor: TestClient, client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS[:1])
    article(editor, clock, 1, ["world"], title="Archived story")
    digest = morning_brief(editor)
    send = send_now(editor, digest["id"])
    smtp.wait_for(2)
    outbox_idle(services)
    assert client.get("/archive/news").status_code == 404, "the archive is opt-in"

    editor.patch("/api/v1/lists/news", json={"archive_enabled": True})
    index = client.get("/archive/news")
    assert index.status_code == 200 and "Morning Brief" in index.text
    issue = client.get(f"/archive/news/{send['id']}")
    assert issue.status_code == 200
    assert "Archived story" in issue.text
    assert "/unsubscribe/" not in issue.text and "@@mailer" not in issue.text
    assert READERS[0] not in issue.text
    feed = client.get("/archive/news/feed.xml")
    assert feed.headers["content-type"].startswith("application/rss+xml")
    assert f"http://testserver/archive/news/{send['id']}" in feed.text
    assert client.get("/archive/news/99999").status_code == 404


@pytest.mark.both_databases
def test_a_one_off_digest_goes_out_once_at_its_time(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS[:1])
    at = clock.now() + timedelta(hours=2)
    created = editor.post(
        "/api/v1/digests",
        json={"list": "news", "name": "Election special", "send_at": at.isoformat()},
    )
    assert created.status_code == 201
    assert datetime.fromisoformat(created.json()["next_run_at"]) == at
    assert run_due_digests(services) == []
    clock.advance(hours=2, minutes=1)
    article(editor, clock, 1, ["politics"])
    assert len(run_due_digests(services)) == 1
    clock.advance(days=1)
    assert run_due_digests(services) == []
    smtp.wait_for(2)


@pytest.mark.both_databases
def test_a_digest_that_sent_cannot_be_deleted_only_disabled(
    editor: TestClient, clock: FrozenClock
) -> None:
    unused = editor.post(
        "/api/v1/digests", json={"list": "news", "name": "Unused", "schedule": "0 9 * * *"}
    ).json()
    assert editor.delete(f"/api/v1/digests/{unused['id']}").status_code == 204
    digest = morning_brief(editor)
    send_now(editor, digest["id"])
    assert editor.delete(f"/api/v1/digests/{digest['id']}").status_code == 409
    disabled = editor.patch(f"/api/v1/digests/{digest['id']}", json={"enabled": False})
    assert disabled.json()["enabled"] is False and disabled.json()["next_run_at"] is None


@pytest.mark.both_databases
def test_readers_who_chose_topics_get_only_those(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS)
    digest = morning_brief(editor)
    [ada] = editor.get("/api/v1/subscribers", params={"email": READERS[0]}).json()
    path = "/unsubscribe/" + services.signer.sign(Purpose.unsubscribe, {"s": ada["id"]})
    page = editor.get(path).text
    assert 'name="topics:news" value="world"' in page and 'value="health"' in page

    saved = editor.post(
        path, data={"action": "preferences", "lists": "news", "topics:news": ["", "health"]}
    )
    assert saved.status_code == 200 and "topics" in saved.text.lower()
    [ada] = editor.get("/api/v1/subscribers", params={"email": READERS[0]}).json()
    last = ada["consent_events"][-1]
    assert (last["action"], last["consent_text"]) == ("preferences-changed", "topics: health")
    assert ada["lists"][0]["status"] == "confirmed"

    article(editor, clock, 1, ["world"], title="World story")
    article(editor, clock, 2, ["health"], title="Health story")
    send = send_now(editor, digest["id"])
    assert send["total"] == 2
    smtp.wait_for(4)
    outbox_idle(services)
    bodies = {
        m["To"]: m.get_body(preferencelist=("plain",)).get_content() for m in digests_received(smtp)
    }
    assert "Health story" in bodies[READERS[0]] and "World story" not in bodies[READERS[0]]
    assert "Health story" in bodies[READERS[1]] and "World story" in bodies[READERS[1]]

    everything = editor.post(
        path, data={"action": "preferences", "lists": "news", "topics:news": [""]}
    )
    assert everything.status_code == 200
    [ada] = editor.get("/api/v1/subscribers", params={"email": READERS[0]}).json()
    assert ada["consent_events"][-1]["consent_text"] == "topics: all"


@pytest.mark.both_databases
def test_a_paused_send_holds_its_mail_until_resumed_and_cancel_drops_the_rest(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(editor, smtp, READERS)
    article(editor, clock, 1, ["world"])
    digest = morning_brief(editor)
    smtp.stop()  # nothing can leave until the relay is back
    send = send_now(editor, digest["id"])
    wait_until_retrying(services, send["id"], 2)  # no message in flight when pausing
    paused = editor.post(f"/api/v1/sends/{send['id']}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    smtp.start()
    clock.advance(minutes=10)  # past any retry back-off
    time.sleep(0.5)  # the sender polls every 0.05 s: it had its chances
    assert digests_received(smtp) == []
    assert editor.get(f"/api/v1/sends/{send['id']}").json()["pending"] == 2

    assert editor.post(f"/api/v1/sends/{send['id']}/resume").json()["status"] == "queued"
    smtp.wait_for(4)
    outbox_idle(services)
    assert editor.get(f"/api/v1/sends/{send['id']}").json()["status"] == "done"
    assert editor.post(f"/api/v1/sends/{send['id']}/pause").status_code == 409

    clock.advance(hours=1)
    article(editor, clock, 2, ["world"], hours_ago=0.5)
    smtp.stop()
    second = send_now(editor, digest["id"])
    wait_until_retrying(services, second["id"], 2)
    editor.post(f"/api/v1/sends/{second['id']}/pause")
    cancelled = editor.post(f"/api/v1/sends/{second['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["pending"] == 0 and cancelled["dropped"] == 2
    smtp.start()
    clock.advance(minutes=10)
    outbox_idle(services)
    assert len(digests_received(smtp)) == 2, "nothing of the cancelled send went out"
