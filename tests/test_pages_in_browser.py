"""Readers' pages in a real browser (Debian chromium driven by Playwright).

The app runs under uvicorn on 127.0.0.1; the publisher's article page is served by a
second server on `localhost` with another port, so the embedded form really posts
cross-origin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from mailer.api.app import create_app
from mailer.services import Services
from mailer.tokens import Purpose
from tests.conftest import SmtpSink, count_rows, free_port, link_in

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APP_PORT = free_port()
APP = f"http://127.0.0.1:{APP_PORT}"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"public_url": APP}


@pytest.fixture
def live_app(services: Services) -> Iterator[str]:
    """The app served over real HTTP on APP."""
    app = create_app(services, run_scheduler=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=APP_PORT, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.02)
    yield APP
    server.should_exit = True
    thread.join(timeout=10)


ARTICLE_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>A story</title></head>
<body><article><h1>A story</h1><p>Some news.</p></article>
<script src="{app}/forms/default/embed.js" async></script>
</body></html>"""


@pytest.fixture
def publisher_page(live_app: str) -> Iterator[str]:
    """An article page on another origin that embeds the signup script."""
    page_html = ARTICLE_HTML.format(app=live_app).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}/2026/11/a-story"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    yield opened
    context.close()


def subscriber(api_key: str, email: str) -> dict[str, Any]:
    found = httpx.get(
        f"{APP}/api/v1/subscribers",
        params={"email": email},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert found.status_code == 200
    [match] = found.json()
    return dict(match)


def statuses(api_key: str, email: str) -> dict[str, str]:
    return {item["slug"]: item["status"] for item in subscriber(api_key, email)["lists"]}


def test_embedded_form_signs_up_cross_origin_and_shows_the_result_inline(
    page: Page, publisher_page: str, smtp: SmtpSink, api_key: str
) -> None:
    page.goto(publisher_page)
    assert page.get_by_text("Sign up to receive our latest news!").is_visible()
    assert page.get_by_text("By submitting this form, I agree to the terms.").is_visible()
    page.get_by_label("Email address").fill("reader@example.com")
    page.get_by_role("button", name="Sign up").click()
    status = page.get_by_role("status")
    status.filter(has_text="check your inbox").wait_for()
    assert page.url == publisher_page, "the reader stays on the article"
    assert page.context.cookies() == []

    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == ["reader@example.com"]
    [requested] = subscriber(api_key, "reader@example.com")["consent_events"]
    assert requested["source_url"] == publisher_page
    assert "Chrome" in requested["user_agent"]


def test_embedded_form_shows_a_bad_address_inline_and_writes_nothing(
    page: Page, publisher_page: str, services: Services
) -> None:
    from mailer.models import Subscriber

    page.goto(publisher_page)
    page.get_by_label("Email address").fill("reader@@example")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("status").filter(has_text="valid email").wait_for()
    assert count_rows(services, Subscriber) == 0


def test_confirm_link_confirms_in_a_browser(
    page: Page, live_app: str, smtp: SmtpSink, api_key: str
) -> None:
    page.goto(f"{live_app}/forms/default")
    page.get_by_label("Email address").fill("reader@example.com")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()

    [mail] = smtp.wait_for(1)
    confirm_url = live_app + link_in(mail.message, "/confirm/", base=live_app)
    page.goto(confirm_url)
    page.get_by_role("heading", name="You're subscribed!").wait_for()
    assert statuses(api_key, "reader@example.com") == {"news": "confirmed"}


def test_without_javascript_the_confirm_page_waits_for_the_button(
    browser: Browser, live_app: str, smtp: SmtpSink, api_key: str
) -> None:
    answer = httpx.post(f"{live_app}/subscribe", json={"email": "reader@example.com"})
    assert answer.status_code == 202
    [mail] = smtp.wait_for(1)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_app + link_in(mail.message, "/confirm/", base=live_app))
    button = page.get_by_role("button", name="Confirm my subscription")
    assert button.is_visible()
    assert statuses(api_key, "reader@example.com") == {"news": "pending"}
    button.click()
    page.get_by_role("heading", name="You're subscribed!").wait_for()
    assert statuses(api_key, "reader@example.com") == {"news": "confirmed"}
    context.close()


def test_unsubscribe_page_leaves_on_the_button_not_on_the_visit(
    page: Page, live_app: str, smtp: SmtpSink, api_key: str, services: Services
) -> None:
    httpx.post(f"{live_app}/subscribe", json={"email": "reader@example.com"})
    [mail] = smtp.wait_for(1)
    httpx.post(live_app + link_in(mail.message, "/confirm/", base=live_app))
    reader = subscriber(api_key, "reader@example.com")
    token = services.signer.sign(Purpose.unsubscribe, {"s": reader["id"]})

    page.goto(f"{live_app}/unsubscribe/{token}")
    assert page.get_by_role("checkbox", name="News").is_checked()
    assert statuses(api_key, "reader@example.com") == {"news": "confirmed"}
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You have been unsubscribed").wait_for()
    assert statuses(api_key, "reader@example.com") == {"news": "unsubscribed"}


def test_signup_form_works_from_the_keyboard(page: Page, live_app: str, smtp: SmtpSink) -> None:
    page.goto(f"{live_app}/forms/default")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type("reader@example.com")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Sign up", (
        "the honeypot field is skipped"
    )
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Check your inbox").wait_for()
    smtp.wait_for(1)
