"""Browser-test fixtures, loaded as a pytest plugin by conftest: the app under uvicorn on
a free port, Debian's chromium driven by Playwright, a fresh profile per test that fails
the test on any console error or uncaught script error, signing in to /admin/, and a
reader confirmed over plain HTTP for a page to show.

A browser test module sets `settings_overrides` to `{"public_url": app_url}` so links in
mail point at the live server; like every test by default, it runs on SQLite only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from mailer import accounts
from mailer.app import create_app
from mailer.db import session_scope
from mailer.models import UserRole
from mailer.services import Services
from tests.conftest import SmtpSink, free_port
from tests.factories import READER, confirmed_reader

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a long enough password"


@pytest.fixture
def app_port() -> int:
    return free_port()


@pytest.fixture
def app_url(app_port: int) -> str:
    return f"http://127.0.0.1:{app_port}"


@pytest.fixture
def live_app(services: Services, app_port: int, app_url: str) -> Iterator[str]:
    """The app under uvicorn in a thread, its sender delivering to the SMTP sink."""
    app = create_app(services, run_scheduler=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=app_port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield app_url
    server.should_exit = True
    thread.join(timeout=15)
    assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def editors_api(live_app: str, api_key: str) -> Iterator[httpx.Client]:
    """The editors' API of the live app, with an API key."""
    with httpx.Client(
        base_url=live_app, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
    ) as api:
        yield api


@dataclass
class Console:
    """Errors the page logged (console errors, CSP violations, uncaught exceptions)."""

    errors: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def expect(self, fragment: str) -> None:
        """An error containing `fragment` is part of the test (a 401 after a bad password)."""
        self.expected.append(fragment)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(part in e for part in self.expected)]

    def on_message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def on_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    """A fresh browser profile (no cookies, no cache) with one tab; the test fails if the
    page logs an error it did not expect."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    opened = context.new_page()
    opened.on("console", console.on_message)
    opened.on("pageerror", console.on_error)
    yield opened
    context.close()
    assert console.unexpected() == [], "the page logged errors"


def create_user(
    services: Services, email: str = "editor@example.org", role: UserRole = UserRole.editor
) -> str:
    with session_scope(services.engine) as session:
        accounts.create_user(session, email, role, PASSWORD, services.clock.now())
    return email


def sign_in(page: Page, live_app: str, email: str) -> None:
    """Sign in through the form, as a person would; lands on the dashboard."""
    page.goto(f"{live_app}/admin/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {email}").wait_for()


@pytest.fixture
def editor_page(page: Page, live_app: str, services: Services) -> Page:
    """A browser signed in to /admin/ as an editor."""
    sign_in(page, live_app, create_user(services))
    return page


@pytest.fixture
def admin_page(page: Page, live_app: str, services: Services) -> Page:
    """A browser signed in to /admin/ as an administrator."""
    sign_in(page, live_app, create_user(services, "chief@example.org", UserRole.admin))
    return page


def lookup(api: httpx.Client, email: str = READER) -> dict[str, Any]:
    """The subscriber as the editors' API of the live app shows them."""
    found = api.get("/api/v1/subscribers", params={"email": email})
    assert found.status_code == 200, found.text
    [subscriber] = found.json()
    return dict(subscriber)


def confirmed_on_news(api: httpx.Client, smtp: SmtpSink) -> dict[str, Any]:
    """A reader signed up and confirmed over plain HTTP (not the subject under test), as
    the editors' API shows them."""
    confirmed_reader(api, smtp, READER)
    reader = lookup(api)
    assert {item["slug"]: item["status"] for item in reader["lists"]} == {"news": "confirmed"}
    return reader
