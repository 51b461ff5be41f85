"""Readers' pages in a real browser: Debian's chromium driven by Playwright.

The app runs under uvicorn on 127.0.0.1:<port>; the publisher's article page is served by
a second server on localhost:<other port>, so the embedded form posts truly cross-origin.
What the tests assert is what a reader sees, and what the editors' API then reports.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from mailer import accounts
from mailer.db import session_scope
from mailer.models import ConsentEvent, OutboxMessage, Subscriber, UserRole
from mailer.services import Services
from mailer.tokens import Purpose
from tests.browser import Console, confirmed_on_news, lookup
from tests.conftest import SmtpSink, count_rows, free_port, link_in
from tests.factories import READER, confirmed_reader

HEADING = "Sign up to receive our latest news!"
CONSENT = "By submitting this form, I agree to the terms."


# ---- servers -------------------------------------------------------------------------


@pytest.fixture
def settings_overrides(app_url: str) -> dict[str, Any]:
    """Links in mail and the script's subscribe URL point at the live server."""
    return {"public_url": app_url}


ARTICLE_HTML = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Council approves the new bridge</title></head>
<body>
<article>
  <h1>Council approves the new bridge</h1>
  <p>The vote was close.</p>
</article>
<script src="{app}/forms/default/embed.js" async></script>
</body>
</html>
"""


@pytest.fixture
def article_url(live_app: str) -> Iterator[str]:
    """A publisher's article page on another origin (other host name, other port), under a
    strict Content-Security-Policy of its own: the embedded form needs no inline styles."""
    html = ARTICLE_HTML.format(app=live_app).encode()
    policy = f"default-src 'self'; script-src {live_app}; connect-src {live_app}; style-src 'self'"

    class ArticlePage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.startswith("/favicon"):
                self.send_response(204)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", policy)
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return None

    port = free_port()
    server = ThreadingHTTPServer(("localhost", port), ArticlePage)
    thread = threading.Thread(target=server.serve_forever, name="publisher", daemon=True)
    thread.start()
    yield f"http://localhost:{port}/2026/11/council-approves-the-new-bridge"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# ---- helpers ---------------------------------------------------------------------------


def statuses(api: httpx.Client, email: str = READER) -> dict[str, str]:
    return {item["slug"]: item["status"] for item in lookup(api, email)["lists"]}


def confirm_url_in(smtp: SmtpSink, live_app: str, count: int = 1) -> str:
    mail = smtp.wait_for(count)[count - 1]
    return live_app + link_in(mail.message, "/confirm/", base=live_app)


def nothing_written(services: Services, smtp: SmtpSink) -> None:
    assert count_rows(services, Subscriber) == 0
    assert count_rows(services, ConsentEvent) == 0
    assert count_rows(services, OutboxMessage) == 0
    assert smtp.messages == []


# ---- the embedded form on a publisher's page -------------------------------------------


def test_embedded_form_signs_up_cross_origin_and_shows_the_result_inline(
    page: Page, article_url: str, smtp: SmtpSink, editors_api: httpx.Client
) -> None:
    page.goto(article_url)
    page.get_by_text(HEADING).wait_for()
    assert page.get_by_text(CONSENT).is_visible()

    page.get_by_label("Email address").fill(READER)
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("status").filter(has_text="Please check your inbox").wait_for()
    assert page.url == article_url, "the reader stays on the article"
    assert page.get_by_role("heading", name="Council approves the new bridge").is_visible()
    assert page.context.cookies() == [], "signing up sets no cookie"

    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == [READER]
    reader = lookup(editors_api)
    assert {item["slug"]: item["status"] for item in reader["lists"]} == {"news": "pending"}
    [requested] = reader["consent_events"]
    assert requested["action"] == "requested"
    assert requested["source_url"] == article_url
    assert "Chrome" in requested["user_agent"]  # also matches HeadlessChrome
    assert requested["consent_text"] == CONSENT
    assert requested["form"] == "default"


def test_embedded_form_refuses_a_malformed_address_inline_and_writes_nothing(
    page: Page, article_url: str, smtp: SmtpSink, services: Services, console: Console
) -> None:
    console.expect("status of 422")  # the refusal the reader is shown
    page.goto(article_url)
    email = page.get_by_label("Email address")
    status = page.get_by_role("status")

    email.fill("reader@@example.com")  # the browser itself knows this is no address
    page.get_by_role("button", name="Sign up").click()
    status.filter(has_text="Please enter a valid email address.").wait_for()

    email.fill("reader@example")  # the browser accepts this one; the server does not
    page.get_by_role("button", name="Sign up").click()
    status.filter(has_text="period").wait_for()
    assert (
        status.text_content() == "The part after the @-sign is not valid. It should have a period."
    )
    assert page.url == article_url
    assert page.get_by_role("button", name="Sign up").is_enabled(), "the reader can try again"
    assert page.context.cookies() == []
    nothing_written(services, smtp)


# ---- the form page, the confirm link -------------------------------------------------


def test_confirm_link_confirms_in_a_browser(
    page: Page, live_app: str, smtp: SmtpSink, editors_api: httpx.Client
) -> None:
    page.goto(f"{live_app}/forms/default")
    assert page.get_by_role("heading", name=HEADING).is_visible()
    page.get_by_label("Email address").fill(READER)
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    assert page.url == f"{live_app}/forms/default/thanks"

    confirm_url = confirm_url_in(smtp, live_app)
    assert statuses(editors_api) == {"news": "pending"}
    page.goto(confirm_url)  # the page confirms by posting itself
    page.get_by_role("heading", name="You're subscribed!").wait_for()
    assert page.get_by_role("status").filter(has_text="News").is_visible()
    assert statuses(editors_api) == {"news": "confirmed"}
    confirmed = lookup(editors_api)["consent_events"][-1]
    assert confirmed["action"] == "confirmed"
    assert "Chrome" in confirmed["user_agent"]

    page.goto(confirm_url)  # opening the link again is harmless
    page.get_by_role("heading", name="You are already confirmed").wait_for()
    actions = [event["action"] for event in lookup(editors_api)["consent_events"]]
    assert actions == ["requested", "confirmed"]


def test_without_javascript_the_confirm_page_waits_for_the_button(
    browser: Browser, live_app: str, smtp: SmtpSink, editors_api: httpx.Client
) -> None:
    assert editors_api.post("/subscribe", json={"email": READER}).status_code == 202
    confirm_url = confirm_url_in(smtp, live_app)

    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(confirm_url)
        button = page.get_by_role("button", name="Confirm my subscription")
        assert button.is_visible()
        page.wait_for_timeout(300)  # time enough for a script that should not run
        assert page.url == confirm_url
        assert statuses(editors_api) == {"news": "pending"}, (
            "opening the link alone confirms nothing"
        )

        button.click()
        page.get_by_role("heading", name="You're subscribed!").wait_for()
        assert statuses(editors_api) == {"news": "confirmed"}
    finally:
        context.close()


# ---- unsubscribe -----------------------------------------------------------------------


def test_unsubscribe_page_leaves_on_the_button_not_on_the_visit(
    page: Page, live_app: str, smtp: SmtpSink, editors_api: httpx.Client, services: Services
) -> None:
    reader = confirmed_on_news(editors_api, smtp)
    token = services.signer.sign(Purpose.unsubscribe, {"s": reader["id"]})

    page.goto(f"{live_app}/unsubscribe/{token}")
    page.get_by_role("heading", name="Unsubscribe").wait_for()
    assert page.get_by_role("checkbox", name="News").is_checked()
    assert statuses(editors_api) == {"news": "confirmed"}, "a visit changes nothing"

    page.get_by_role("button", name="Unsubscribe", exact=True).click()
    page.get_by_role("heading", name="You have been unsubscribed").wait_for()
    assert not page.get_by_role("checkbox", name="News").is_checked()
    assert statuses(editors_api) == {"news": "unsubscribed"}
    left = lookup(editors_api)["consent_events"][-1]
    assert left["action"] == "unsubscribed"
    assert "Chrome" in left["user_agent"]
    assert page.context.cookies() == []


# ---- accessibility ---------------------------------------------------------------------


def _tab_order(page: Page, stops: int) -> list[str]:
    """The name (or id) of each element that Tab focuses, from the top of the page."""
    order = []
    for _ in range(stops):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "() => { const e = document.activeElement;"
                " return e ? (e.name || e.id || e.textContent.trim() || e.tagName) : ''; }"
            )
        )
    return order


def test_signup_form_page_works_from_the_keyboard_and_hides_the_honeypot(
    page: Page, live_app: str, smtp: SmtpSink, editors_api: httpx.Client
) -> None:
    page.goto(f"{live_app}/forms/default")
    assert page.get_by_label("Email address").get_attribute("type") == "email"
    honeypot = page.locator("input[name=website]")
    assert honeypot.get_attribute("tabindex") == "-1"

    assert _tab_order(page, 2) == ["email", "Sign up"], "Tab skips the honeypot"
    page.get_by_label("Email address").focus()
    page.keyboard.type(READER)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Check your inbox").wait_for()
    smtp.wait_for(1)
    assert statuses(editors_api) == {"news": "pending"}


def test_embedded_form_is_labelled_and_its_honeypot_is_not_reachable_by_tab(
    page: Page, article_url: str
) -> None:
    page.goto(article_url)
    email = page.get_by_label("Email address")
    email.wait_for()
    assert page.locator("input[name=website]").get_attribute("tabindex") == "-1"
    email.focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.textContent")
    assert focused == "Sign up", "Tab goes from the address to the button"


def test_an_editor_signs_in_and_out_from_the_keyboard(
    page: Page, live_app: str, services: Services, console: Console
) -> None:
    with session_scope(services.engine) as session:
        accounts.create_user(
            session,
            "editor@example.org",
            UserRole.editor,
            "a long enough password",
            services.clock.now(),
        )
    console.expect("the server responded with a status of 401")  # the wrong password
    page.goto(f"{live_app}/admin/")
    page.get_by_label("Email address").fill("editor@example.org")
    page.get_by_label("Password").fill("a wrong password")
    page.get_by_label("Password").press("Enter")
    page.get_by_role("alert").filter(has_text="do not match").wait_for()

    page.get_by_label("Password").fill("a long enough password")
    page.get_by_label("Password").press("Enter")
    page.get_by_text("Signed in as editor@example.org").wait_for()
    [cookie] = [c for c in page.context.cookies() if c["name"] == "mailer_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    page.goto(f"{live_app}/admin/")
    assert page.get_by_role("button", name="Sign in").is_visible(), "signed out for good"


# ---- the whole journey -----------------------------------------------------------------


def test_a_reader_signs_up_on_an_article_confirms_changes_preferences_and_leaves(
    page: Page, article_url: str, live_app: str, smtp: SmtpSink, editors_api: httpx.Client
) -> None:
    sport = {"slug": "sport", "name": "Sport Weekly", "welcome_enabled": True}
    assert editors_api.post("/api/v1/lists", json=sport).status_code == 201
    offered = editors_api.patch("/api/v1/forms/default", json={"lists": ["news", "sport"]})
    assert offered.status_code == 200, offered.text

    # Sign up on the publisher's page, through the embedded form, to both newsletters.
    page.goto(article_url)
    assert page.get_by_role("checkbox", name="News").is_checked()
    assert page.get_by_role("checkbox", name="Sport Weekly").is_checked()
    page.get_by_label("Email address").fill(READER)
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("status").filter(has_text="Please check your inbox").wait_for()
    assert statuses(editors_api) == {"news": "pending", "sport": "pending"}

    # Confirm with the link in the mail.
    page.goto(confirm_url_in(smtp, live_app))
    page.get_by_role("heading", name="You're subscribed!").wait_for()
    assert statuses(editors_api) == {"news": "confirmed", "sport": "confirmed"}

    # The welcome mail of Sport Weekly leads to the preference centre.
    welcome = smtp.wait_for(2)[1]
    assert welcome.message["Subject"] and "Sport Weekly" in welcome.message["Subject"]
    preferences_url = live_app + link_in(welcome.message, "/unsubscribe/", base=live_app)
    page.goto(preferences_url)
    page.get_by_role("heading", name="Unsubscribe").wait_for()
    page.get_by_role("checkbox", name="News").uncheck()
    page.get_by_role("button", name="Save preferences").click()
    page.get_by_role("heading", name="Your preferences are saved").wait_for()
    assert page.get_by_role("status").filter(has_text="You left News.").is_visible()
    assert statuses(editors_api) == {"news": "unsubscribed", "sport": "confirmed"}

    # One click leaves Sport Weekly too.
    page.goto(preferences_url)
    assert page.get_by_text("Stop receiving Sport Weekly?").is_visible()
    page.get_by_role("button", name="Unsubscribe", exact=True).click()
    page.get_by_role("heading", name="You have been unsubscribed").wait_for()
    assert statuses(editors_api) == {"news": "unsubscribed", "sport": "unsubscribed"}
    actions = [event["action"] for event in lookup(editors_api)["consent_events"]]
    assert actions == ["requested", "confirmed", "unsubscribed", "unsubscribed"]
    assert page.context.cookies() == [], "no page of the journey sets a cookie"


# ---- keyboard, focus and small screens -------------------------------------------------


def _outline(page: Page) -> str:
    return str(
        page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement);"
            " return s.outlineStyle + ' ' + s.outlineWidth; }"
        )
    )


def test_a_keyboard_only_reader_sees_where_they_are_and_can_tick_the_consent_box(
    page: Page, live_app: str, smtp: SmtpSink, editors_api: httpx.Client
) -> None:
    boxed = editors_api.patch("/api/v1/forms/default", json={"consent_checkbox": True})
    assert boxed.status_code == 200
    page.goto(f"{live_app}/forms/default")

    assert _tab_order(page, 1) == ["email"]
    assert _outline(page) != "none 0px", "the focused field is outlined"
    page.keyboard.type(READER)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.name") == "consent"
    assert _outline(page).startswith("solid"), "the focused box is outlined"
    page.keyboard.press("Space")
    assert page.get_by_role("checkbox", name=CONSENT).is_checked()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Sign up"
    assert _outline(page).startswith("solid"), "the focused button is outlined"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Check your inbox").wait_for()
    smtp.wait_for(1)
    assert statuses(editors_api) == {"news": "pending"}


def _no_horizontal_scroll(page: Page) -> bool:
    return bool(
        page.evaluate(
            "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def test_the_pages_fit_a_320_pixel_wide_screen(
    page: Page, live_app: str, smtp: SmtpSink, editors_api: httpx.Client, services: Services
) -> None:
    sport = {"slug": "sport-and-leisure-weekly-edition", "name": "Sport and Leisure Weekly"}
    assert editors_api.post("/api/v1/lists", json=sport).status_code == 201
    assert (
        editors_api.patch(
            "/api/v1/forms/default",
            json={
                "lists": ["news", sport["slug"]],
                "consent_checkbox": True,
                "consent_text": "I agree to the terms at https://news.example.org/"
                "terms-and-conditions-of-the-newsletter-service-2026",
            },
        ).status_code
        == 200
    )
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(f"{live_app}/forms/default")
    assert _no_horizontal_scroll(page), "the form page scrolls sideways"
    button = page.get_by_role("button", name="Sign up").bounding_box()
    assert button is not None and button["x"] + button["width"] <= 320

    reader = confirmed_reader_on_both(editors_api, smtp, sport["slug"])
    token = services.signer.sign(Purpose.unsubscribe, {"s": reader["id"]})
    page.goto(f"{live_app}/unsubscribe/{token}")
    page.get_by_role("heading", name="Unsubscribe").wait_for()
    assert _no_horizontal_scroll(page), "the preference centre scrolls sideways"


def confirmed_reader_on_both(api: httpx.Client, smtp: SmtpSink, other: str) -> dict[str, Any]:
    confirmed_reader(api, smtp, READER, lists=["news", other], consent=True)
    return lookup(api)


# ---- the form editor -------------------------------------------------------------------


NEW_WORDING = "Yes, send me the newsletter. I have read the privacy policy."


def test_an_editor_rewords_the_consent_and_the_preview_and_readers_see_it(
    editor_page: Page, live_app: str, smtp: SmtpSink, editors_api: httpx.Client
) -> None:
    page = editor_page
    page.get_by_role("link", name="Forms").click()
    page.get_by_role("link", name="default").click()
    page.get_by_role("heading", name="Form default").wait_for()
    preview = page.frame_locator("iframe#preview")
    preview.get_by_text(CONSENT).wait_for()

    # The preview follows the typing, before anything is saved.
    page.get_by_label("Consent wording").fill(NEW_WORDING)
    preview.get_by_text(NEW_WORDING).wait_for()
    page.get_by_label("Heading").fill("Get the Morning Brief")
    preview.get_by_role("heading", name="Get the Morning Brief").wait_for()
    assert editors_api.get("/api/v1/forms/default").json()["consent_version"] == 1

    page.get_by_role("button", name="Save").click()
    page.get_by_role("status").filter(has_text="Saved.").wait_for()
    preview.get_by_text(NEW_WORDING).wait_for()
    versions = page.get_by_role("table").last
    assert versions.get_by_role("cell", name=NEW_WORDING).is_visible()
    assert versions.get_by_role("cell", name=CONSENT).is_visible()
    form = editors_api.get("/api/v1/forms/default").json()
    assert (form["consent_text"], form["consent_version"]) == (NEW_WORDING, 2)

    # The snippet is copied as it is shown.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy the script").click()
    page.get_by_role("status").filter(has_text="Copied").wait_for()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == f'<script src="{live_app}/forms/default/embed.js" async></script>'

    # The next reader signs up under the new wording.
    assert editors_api.post("/subscribe", json={"email": READER}).status_code == 202
    [requested] = lookup(editors_api)["consent_events"]
    assert (requested["consent_text"], requested["consent_version"]) == (NEW_WORDING, 2)
