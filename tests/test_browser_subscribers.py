"""An editor looks up a reader's consent history and erases the reader, in a real browser
(Debian's chromium through Playwright), with the app under uvicorn."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import confirmed_on_news, lookup
from tests.conftest import SmtpSink
from tests.factories import READER

WORDING = 'Yes, send me the "Morning Brief" & other news by email. I can leave at any time.'


@pytest.fixture
def settings_overrides(app_url: str) -> dict[str, Any]:
    return {"public_url": app_url}


def test_an_editor_reads_a_reader_s_consent_history_then_erases_the_reader(
    editor_page: Page, live_app: str, editors_api: httpx.Client, smtp: SmtpSink
) -> None:
    changed = editors_api.patch("/api/v1/forms/default", json={"consent_text": WORDING})
    assert changed.status_code == 200, changed.text
    reader = confirmed_on_news(editors_api, smtp)
    page = editor_page

    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Subscribers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscribers")
    page.get_by_label("Address, or a part of one").fill(READER.upper())
    page.get_by_role("button", name="Find").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(READER)
    assert page.url == f"{live_app}/admin/subscribers/{reader['id']}", "no address in the URL"
    timeline = page.get_by_role("list", name="Consent history")
    events = timeline.get_by_role("listitem")
    expect(events).to_have_count(2)
    expect(events.nth(0).locator(".action")).to_have_text("requested")
    expect(events.nth(1).locator(".action")).to_have_text("confirmed")
    for n in (0, 1):
        expect(events.nth(n).locator("blockquote")).to_have_text(WORDING)
        expect(events.nth(n).locator("dd.version")).to_have_text("2")
    expect(page.get_by_role("status").filter(has_text="Chain verified")).to_be_visible()

    page.get_by_role("link", name="Erase…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Erase {READER}?")
    erase = page.get_by_role("button", name="Erase this subscriber")
    erase.click()  # the box is not ticked: the browser keeps the form
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Erase {READER}?")
    assert lookup(editors_api)["email"] == READER, "nothing erased yet"

    page.get_by_label("I understand this cannot be undone").check()
    erase.click()
    expect(page.get_by_role("status").first).to_contain_text("The subscriber was erased.")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Erased subscriber #{reader['id']}")
    expect(page.get_by_text(READER)).to_have_count(0)
    events = page.get_by_role("list", name="Consent history").get_by_role("listitem")
    expect(events).to_have_count(3)
    expect(events.nth(0).locator("blockquote")).to_have_text(WORDING)
    expect(events.nth(2).locator(".action")).to_have_text("erased")
    expect(page.get_by_role("status").filter(has_text="Chain verified")).to_be_visible()
    assert editors_api.get("/api/v1/subscribers", params={"email": READER}).json() == []
