"""The dashboard and Users and API keys in a real browser: an administrator signs in,
sees the subscribers chart, creates an editor and an API key through the pages, and the
editor then signs in with the password shown. Any console error fails the test."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from mailer.models import UserRole
from mailer.services import Services
from tests.browser import PASSWORD, create_user
from tests.conftest import SmtpSink, link_in


@pytest.fixture
def settings_overrides(app_url: str) -> dict[str, Any]:
    return {"public_url": app_url}


def test_an_admin_sees_the_chart_and_creates_an_editor_and_an_api_key(
    page: Page, live_app: str, services: Services, smtp: SmtpSink
) -> None:
    # A reader confirms, so the chart has something to draw.
    signup = httpx.post(f"{live_app}/subscribe", json={"email": "reader@example.com"})
    assert signup.status_code == 202
    confirm_path = link_in(smtp.wait_for(1)[-1].message, "/confirm/", base=live_app)
    assert httpx.post(f"{live_app}{confirm_path}").status_code == 200

    admin = create_user(services, "chief@example.org", UserRole.admin)
    page.goto(f"{live_app}/admin/")
    page.get_by_label("Email address").fill(admin)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    chart = page.locator("#subscribers-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("path.series")).to_have_count(1)
    expect(page.get_by_role("img", name="Confirmed subscribers per list")).to_be_visible()
    page.locator("#growth-heading ~ details summary").click()
    expect(page.locator("#subscribers-table tbody tr").last.locator("td")).to_have_text("1")

    page.get_by_role("link", name="Users and keys").click()
    expect(page.get_by_role("heading", name="Users and API keys", level=1)).to_be_visible()
    page.get_by_label("Email address").fill("new.editor@example.org")
    page.get_by_label("Role", exact=True).select_option("editor")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("heading", name="User created")).to_be_visible()
    password = page.get_by_label("Password for new.editor@example.org").input_value()
    assert len(password) >= 20
    assert password not in page.url

    page.get_by_role("link", name="Back to users and keys").click()
    expect(page.locator("#users")).to_contain_text("new.editor@example.org")
    page.get_by_label("Name (who or what the key is for)").fill("Newsroom script")
    page.get_by_role("button", name="Create API key").click()
    key = page.get_by_label("API key “Newsroom script”").input_value()
    lists = httpx.get(f"{live_app}/api/v1/lists", headers={"Authorization": f"Bearer {key}"})
    assert lists.status_code == 200

    page.get_by_role("link", name="Back to users and keys").click()
    page.get_by_role("link", name="Revoke Newsroom script").click()
    page.get_by_role("button", name="Revoke “Newsroom script”").click()
    expect(page.get_by_role("status")).to_have_text("Revoked.")
    expect(page.locator("#keys")).to_contain_text("revoked")
    lists = httpx.get(f"{live_app}/api/v1/lists", headers={"Authorization": f"Bearer {key}"})
    assert lists.status_code == 401

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Email address").fill("new.editor@example.org")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as new.editor@example.org")).to_be_visible()
    expect(page.get_by_role("link", name="Users and keys")).to_have_count(0)
