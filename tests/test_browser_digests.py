"""An editor in a real browser: defines a digest with the cron builder, previews it, sends
it now and watches the send finish (chromium via Playwright; the app's sender delivers to
the SMTP sink)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from mailer.clock import FrozenClock
from mailer.services import Services
from tests.browser import Console
from tests.conftest import SmtpSink, link_in

READERS = ["ada@example.com", "ben@example.org", "cleo@example.net"]
TITLES = ["Council approves the new bridge", "Clinics open longer", "Harbour reopens"]


@pytest.fixture
def settings_overrides(app_url: str) -> dict[str, Any]:
    return {"public_url": app_url}


@pytest.fixture
def readers_and_articles(
    editors_api: httpx.Client, smtp: SmtpSink, services: Services, live_app: str
) -> None:
    """Three confirmed readers of "news" and three new articles, set up over HTTP."""
    for count, address in enumerate(READERS, start=1):
        assert editors_api.post("/subscribe", json={"email": address}).status_code == 202
        mail = smtp.wait_for(count)[count - 1]
        confirm = live_app + link_in(mail.message, "/confirm/", base=live_app)
        assert httpx.post(confirm).status_code == 200
    for n, title in enumerate(TITLES, start=1):
        made = editors_api.post(
            "/api/v1/articles",
            json={
                "url": f"https://news.example.com/story-{n}",
                "title": title,
                "summary": f"What happened in story {n}.",
                "topics": ["world"],
                "published_at": (services.clock.now() - timedelta(hours=n)).isoformat(),
            },
        )
        assert made.status_code == 201, made.text


def test_an_editor_builds_a_schedule_previews_and_sends_a_digest_and_watches_it_finish(
    editor_page: Page,
    live_app: str,
    readers_and_articles: None,
    smtp: SmtpSink,
    editors_api: httpx.Client,
    clock: FrozenClock,
    console: Console,
) -> None:
    page = editor_page
    before = len(smtp.messages)
    page.get_by_role("link", name="Digests").click()
    page.get_by_role("link", name="New digest").click()
    page.get_by_label("Name").fill("Evening Edition")
    page.get_by_label("Time zone").fill("Europe/Berlin")

    # A cron expression the editor writes is checked as it is typed.
    cron = page.get_by_label("Cron expression")
    problem = page.locator("#schedule-error")
    cron.fill("0 7 * *")
    expect(problem).to_have_text("A cron expression has five fields.")
    console.expect("status of 422")  # the server's refusal of the next one
    cron.fill("0 25 * * *")
    expect(problem).to_contain_text("invalid cron expression")
    expect(page.get_by_label("Frequency")).to_have_value("custom")

    # The cron builder fills the expression and lists the next runs in the digest's zone.
    page.get_by_label("Frequency").select_option("weekly")
    page.get_by_label("Monday").check()
    page.get_by_label("Wednesday").check()
    page.get_by_label("Time of day").fill("18:30")
    runs = page.locator("#next-runs li")
    expect(cron).to_have_value("30 18 * * 1,3")
    expect(runs).to_have_count(5)
    expect(problem).to_be_hidden()
    expect(runs.first).to_contain_text("18:30 CE")
    expect(page.locator("#schedule-described")).to_have_text("every Mon, Wed at 18:30")
    for label in runs.all_text_contents():
        assert label.startswith(("Mon", "Wed")), label

    page.get_by_label("Time of day").fill("07:15")
    expect(cron).to_have_value("15 7 * * 1,3")
    expect(runs.first).to_contain_text("07:15 CE")
    assert all("07:15" in label for label in runs.all_text_contents())
    page.get_by_role("button", name="Create digest").click()

    # Its page: the schedule as saved, and the preview, HTML and text side by side.
    page.get_by_role("status").filter(has_text="Created.").wait_for()
    expect(page.get_by_role("heading", name="Evening Edition", level=1)).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("every Mon, Wed at 07:15")
    frame = page.frame_locator("#preview-frame")
    expect(frame.get_by_role("link", name=TITLES[0])).to_be_visible()
    expect(page.locator("#preview-text")).to_contain_text(f"1. {TITLES[0]}")
    expect(page.locator("#preview-subject")).to_contain_text("Evening Edition: ")

    # The preview follows the draft without saving it.
    page.get_by_text("Templates (optional)").click()
    page.get_by_label("Subject template").fill("Tonight: {{ articles | length }} stories")
    expect(page.locator("#preview-subject")).to_have_text("Tonight: 3 stories")
    page.get_by_label("HTML template").fill("<h1>Draft of {{ digest.name }}</h1>")
    expect(frame.get_by_role("heading", name="Draft of Evening Edition")).to_be_visible()
    [saved] = editors_api.get("/api/v1/digests").json()
    assert saved["subject_template"] == "" and saved["html_template"] == ""
    page.reload()  # leave the draft: send the saved digest

    # Send now while the relay is down, then watch the send page follow it to the end.
    smtp.stop()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Send now").click()
    page.get_by_role("status").filter(has_text="The send has started.").wait_for()
    assert "/admin/sends/" in page.url
    expect(page.locator("#send-pending")).to_have_text("3")
    expect(page.locator("#send-status")).to_have_text(re.compile("queued|sending"))
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    page.evaluate("window.stillTheSamePage = true")
    smtp.start()
    clock.advance(minutes=5)  # past the retry back-off
    expect(page.locator("#send-status")).to_have_text("done", timeout=15_000)
    assert page.evaluate("window.stillTheSamePage"), "updated in place, not reloaded"
    expect(page.locator("#send-sent")).to_have_text("3")
    expect(page.locator("#send-total")).to_have_text("3")
    expect(page.locator("#send-pending")).to_have_text("0")
    expect(page.get_by_role("button", name="Pause")).to_be_hidden()
    received = smtp.wait_for(before + 3)[before:]
    assert sorted(address for m in received for address in m.rcpt_tos) == sorted(READERS)
    assert all(m.message["Subject"].startswith("Evening Edition: ") for m in received)


def test_without_a_confirmation_nothing_is_sent(
    editor_page: Page, readers_and_articles: None, smtp: SmtpSink, editors_api: httpx.Client
) -> None:
    made = editors_api.post(
        "/api/v1/digests", json={"list": "news", "name": "Noon", "schedule": "0 12 * * *"}
    )
    assert made.status_code == 201
    page = editor_page
    page.goto(page.url.replace("/admin/dashboard", f"/admin/digests/{made.json()['id']}"))
    before = len(smtp.messages)

    def decline(dialog: Dialog) -> None:
        assert "Send Noon" in dialog.message
        dialog.dismiss()

    page.once("dialog", decline)
    page.get_by_role("button", name="Send now").click()
    page.wait_for_timeout(300)
    assert "/admin/digests/" in page.url
    assert editors_api.get("/api/v1/digests").json()[0]["last_sent_at"] is None
    assert len(smtp.messages) == before
