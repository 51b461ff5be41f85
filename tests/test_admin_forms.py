"""/admin/forms: editors change a form's consent wording (a new version each time), its
lists and its thank-you page, and copy its embed snippet; bad input writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.models import Form, FormConsentVersion
from mailer.services import Services
from tests.admin import csrf_of
from tests.conftest import count_rows

READER = "reader@example.com"
NEW_WORDING = "I agree to receive the newsletter and accept the privacy policy."


def page_form(client: TestClient, slug: str = "default") -> dict[str, Any]:
    """The fields the edit page shows, as the browser would post them unchanged."""
    page = client.get(f"/admin/forms/{slug}")
    assert page.status_code == 200, page.text
    form = client.get(f"/api/v1/forms/{slug}").json()
    return {
        "csrf": csrf_of(page.text),
        "name": form["name"],
        "heading": form["heading"],
        "consent_text": form["consent_text"],
        "lists": form["lists"],
        "redirect_url": form["redirect_url"],
        "thanks_message": "",
    }


def test_changing_the_wording_makes_a_new_version_that_the_next_signup_records(
    signed_in: TestClient,
) -> None:
    fields = page_form(signed_in)
    saved = signed_in.post(
        "/admin/forms/default",
        data={**fields, "consent_text": NEW_WORDING},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    page = signed_in.get(saved.headers["location"])
    assert "Saved." in page.text
    assert NEW_WORDING in page.text
    assert "version 2" in page.text

    form = signed_in.get("/api/v1/forms/default").json()
    assert (form["consent_text"], form["consent_version"]) == (NEW_WORDING, 2)
    assert NEW_WORDING in signed_in.get("/forms/default").text

    assert signed_in.post("/subscribe", json={"email": READER}).status_code == 202
    [reader] = signed_in.get("/api/v1/subscribers", params={"email": READER}).json()
    [requested] = reader["consent_events"]
    assert requested["consent_text"] == NEW_WORDING
    assert requested["consent_version"] == 2


def test_saving_without_changes_keeps_the_version(signed_in: TestClient) -> None:
    fields = page_form(signed_in)
    # A textarea posts its line breaks as CRLF; that is no new wording.
    fields["consent_text"] = fields["consent_text"].replace("\n", "\r\n") + "\r\n"
    assert signed_in.post("/admin/forms/default", data=fields).status_code == 200
    assert signed_in.get("/api/v1/forms/default").json()["consent_version"] == 1


def test_the_thank_you_message_and_lists_offered_are_saved(
    signed_in: TestClient, services: Services
) -> None:
    assert (
        signed_in.post("/api/v1/lists", json={"slug": "sport", "name": "Sport Weekly"}).status_code
        == 201
    )
    fields = page_form(signed_in)
    answer = signed_in.post(
        "/admin/forms/default",
        data={
            **fields,
            "lists": ["news", "sport"],
            "thanks_message": "Thank you! Your first digest arrives on Monday.",
        },
    )
    assert answer.status_code == 200
    assert signed_in.get("/api/v1/forms/default").json()["lists"] == ["news", "sport"]
    thanks = signed_in.get("/forms/default/thanks").text
    assert "Thank you! Your first digest arrives on Monday." in thanks
    assert "Sport Weekly" in signed_in.get("/forms/default").text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lists": ["no-such-list"]}, "There is no list no-such-list."),
        ({"lists": []}, "Choose at least one list"),
        ({"consent_text": "   "}, "The consent wording is required."),
        ({"redirect_url": "javascript:alert(1)"}, "must be an absolute http(s) URL"),
    ],
)
def test_bad_input_is_shown_on_the_page_and_writes_nothing(
    signed_in: TestClient, services: Services, change: dict[str, Any], message: str
) -> None:
    fields = page_form(signed_in)
    answer = signed_in.post(
        "/admin/forms/default", data={**fields, "heading": "A new heading", **change}
    )
    assert answer.status_code == 422
    assert message in answer.text
    assert 'role="alert"' in answer.text
    assert 'value="A new heading"' in answer.text, "what the editor typed is kept"
    form = signed_in.get("/api/v1/forms/default").json()
    assert form["heading"] == "Sign up to receive our latest news!"
    assert form["lists"] == ["news"]
    assert form["consent_version"] == 1
    assert count_rows(services, FormConsentVersion) == 1


def test_a_new_form_is_created_and_offers_its_lists(signed_in: TestClient) -> None:
    listing = signed_in.get("/admin/forms")
    created = signed_in.post(
        "/admin/forms",
        data={
            "csrf": csrf_of(listing.text),
            "slug": "sidebar",
            "name": "Sidebar",
            "consent_text": "I agree.",
            "lists": ["news"],
        },
        follow_redirects=False,
    )
    assert created.status_code == 303
    assert created.headers["location"].startswith("/admin/forms/sidebar")
    form = signed_in.get("/api/v1/forms/sidebar").json()
    assert (form["lists"], form["consent_text"], form["consent_version"]) == (
        ["news"],
        "I agree.",
        1,
    )
    assert "sidebar" in signed_in.get("/admin/forms").text

    again = signed_in.post(
        "/admin/forms",
        data={
            "csrf": csrf_of(listing.text),
            "slug": "sidebar",
            "consent_text": "I agree.",
            "lists": ["nope"],
        },
    )
    assert again.status_code == 422
    assert "There is no list nope." in again.text


def test_the_page_offers_the_embed_snippets_and_a_preview(signed_in: TestClient) -> None:
    page = signed_in.get("/admin/forms/default").text
    # The snippets sit escaped in read-only textareas: the browser shows them as text.
    assert (
        "&lt;script src=&#34;http://testserver/forms/default/embed.js&#34; async&gt;"
        "&lt;/script&gt;</textarea>" in page
    )
    assert "&lt;iframe src=&#34;http://testserver/forms/default&#34;" in page
    assert 'id="preview"' in page and 'src="/admin/forms/default/preview"' in page

    preview = signed_in.get(
        "/admin/forms/default/preview",
        params={"draft": "1", "heading": "Get the Morning Brief", "consent_text": "Draft words"},
    )
    assert preview.status_code == 200
    assert "Get the Morning Brief" in preview.text and "Draft words" in preview.text
    assert "frame-ancestors 'self'" in preview.headers["content-security-policy"]
    assert preview.headers["x-frame-options"] == "SAMEORIGIN"
    assert signed_in.get("/api/v1/forms/default").json()["consent_version"] == 1


def test_a_post_without_the_csrf_token_is_refused(
    signed_in: TestClient, services: Services
) -> None:
    fields = page_form(signed_in)
    del fields["csrf"]
    answer = signed_in.post("/admin/forms/default", data={**fields, "consent_text": NEW_WORDING})
    assert answer.status_code == 403
    assert signed_in.get("/api/v1/forms/default").json()["consent_version"] == 1
    forged = signed_in.post(
        "/admin/forms",
        data={"csrf": "forged", "slug": "x", "consent_text": "y", "lists": ["news"]},
    )
    assert forged.status_code == 403
    assert count_rows(services, Form) == 1


def test_signed_out_visitors_are_sent_to_sign_in(client: TestClient) -> None:
    for path in ("/admin/forms", "/admin/forms/default", "/admin/forms/default/preview"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/"
