"""Every editor action that both the editors' API and the admin pages offer refuses the
same bad input the same way on both: a 4xx (the page shown again with the problem, or
the error page) and the same reason in the answer."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from mailer.services import Services
from tests.admin import csrf_of

Call = Callable[["Desk"], httpx.Response]


@dataclass
class Desk:
    """A signed-in editor with a digest (nothing new to send), a send that ended, an
    article, and the session's CSRF token for the pages."""

    client: TestClient
    csrf: str
    digest_id: int
    send_id: int
    article_id: int

    def api(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.client.request(method, f"/api/v1{path}", json=body)

    def post_page(self, path: str, fields: dict[str, Any]) -> httpx.Response:
        return self.client.post(
            f"/admin{path}", data={**fields, "csrf": self.csrf}, follow_redirects=False
        )

    def new_digest(self, name: str) -> int:
        made = self.api("POST", "/digests", {"list": "news", "name": name, "schedule": "0 7 * * *"})
        assert made.status_code == 201, made.text
        return int(made.json()["id"])


@pytest.fixture
def desk(signed_in: TestClient, services: Services) -> Desk:
    page = signed_in.get("/admin/digests")
    assert page.status_code == 200, page.text
    desk = Desk(signed_in, csrf_of(page.text), 0, 0, 0)
    desk.digest_id = desk.new_digest("Morning Brief")
    skipped = desk.api("POST", f"/digests/{desk.digest_id}/send")
    assert skipped.status_code == 202 and skipped.json()["status"] == "skipped", skipped.text
    desk.send_id = int(skipped.json()["id"])
    long_ago = services.clock.now() - timedelta(days=365)  # outside any digest's window
    story = desk.api(
        "POST",
        "/articles",
        {
            "url": "https://news.example.com/old",
            "title": "Old",
            "published_at": long_ago.isoformat(),
        },
    )
    assert story.status_code == 201, story.text
    desk.article_id = int(story.json()["id"])
    return desk


def digest_body(**changes: Any) -> dict[str, Any]:
    return {"list": "news", "name": "Evening Brief", "schedule": "0 18 * * *"} | changes


def digest_page(**changes: Any) -> dict[str, Any]:
    """The digest form as a browser posts it (every field, as strings)."""
    fields = {
        "name": "Evening Brief",
        "list": "news",
        "schedule": "0 18 * * *",
        "timezone": "UTC",
        "topics": "",
        "max_articles": "10",
        "enabled": "on",
        "subject_template": "",
        "html_template": "",
        "text_template": "",
    }
    return fields | changes


def form_page(**changes: Any) -> dict[str, Any]:
    fields = {
        "slug": "sidebar",
        "name": "Sidebar",
        "heading": "",
        "consent_text": "I agree.",
        "lists": ["news"],
        "redirect_url": "",
        "allowed_hosts": "",
        "thanks_message": "",
    }
    return fields | changes


def twice(first: Call, second: Call) -> Call:
    """`first` must succeed; the answer is `second`'s."""

    def both(desk: Desk) -> httpx.Response:
        done = first(desk)
        assert done.status_code < 400, done.text
        return second(desk)

    return both


def send_now_twice_by_api(desk: Desk) -> httpx.Response:
    digest_id = desk.new_digest("Twice by API")
    return twice(
        lambda d: d.api("POST", f"/digests/{digest_id}/send"),
        lambda d: d.api("POST", f"/digests/{digest_id}/send"),
    )(desk)


def send_now_twice_by_page(desk: Desk) -> httpx.Response:
    digest_id = desk.new_digest("Twice by page")
    return twice(
        lambda d: d.post_page(f"/digests/{digest_id}/send", {}),
        lambda d: d.post_page(f"/digests/{digest_id}/send", {}),
    )(desk)


def article_page(desk: Desk, **changes: str) -> httpx.Response:
    fields = {"title": "Old", "summary": "", "author": "", "image_url": "", "topics": ""}
    fields |= {"published_at": "2025-01-01T08:00"}
    return desk.post_page(f"/articles/{desk.article_id}", fields | changes)


def article_body(**changes: Any) -> dict[str, Any]:
    return {
        "url": "https://news.example.com/old",
        "title": "Old",
        "published_at": "2025-01-01T08:00:00Z",
    } | changes


@dataclass(frozen=True)
class Case:
    api: Call
    page: Call
    reason: str
    """What both answers must say (case does not matter)."""


LONG_NAME = "x" * 201

CASES: dict[str, Case] = {
    # lists have no admin page: they are made through the API only
    "form: create offering an unknown list": Case(
        lambda d: d.api(
            "POST", "/forms", {"slug": "sidebar", "lists": ["nope"], "consent_text": "I agree."}
        ),
        lambda d: d.post_page("/forms", form_page(lists=["nope"])),
        "list nope",
    ),
    "form: create with a taken slug": Case(
        lambda d: d.api(
            "POST", "/forms", {"slug": "default", "lists": ["news"], "consent_text": "I agree."}
        ),
        lambda d: d.post_page("/forms", form_page(slug="default")),
        "exists",
    ),
    "form: create with a bad slug": Case(
        lambda d: d.api(
            "POST", "/forms", {"slug": "Side Bar", "lists": ["news"], "consent_text": "I agree."}
        ),
        lambda d: d.post_page("/forms", form_page(slug="Side Bar")),
        "must be 1-64 lower-case letters, digits or dashes",
    ),
    "form: create with a too long name": Case(
        lambda d: d.api(
            "POST",
            "/forms",
            {"slug": "sidebar", "lists": ["news"], "consent_text": "I agree.", "name": LONG_NAME},
        ),
        lambda d: d.post_page("/forms", form_page(name=LONG_NAME)),
        "200 characters",
    ),
    "form: create with a line break in the name": Case(
        lambda d: d.api(
            "POST",
            "/forms",
            {"slug": "sidebar", "lists": ["news"], "consent_text": "I agree.", "name": "A\nB"},
        ),
        lambda d: d.post_page("/forms", form_page(name="A\nB")),
        "must not contain line breaks or control characters",
    ),
    "form: update with a redirect that is no URL": Case(
        lambda d: d.api("PATCH", "/forms/default", {"redirect_url": "javascript:alert(1)"}),
        lambda d: d.post_page("/forms/default", form_page(redirect_url="javascript:alert(1)")),
        "must be an absolute http(s) URL",
    ),
    "form: update with a redirect to a host not allowed": Case(
        lambda d: d.api("PATCH", "/forms/default", {"redirect_url": "https://evil.example/x"}),
        lambda d: d.post_page("/forms/default", form_page(redirect_url="https://evil.example/x")),
        "which is not one of the form's allowed hosts",
    ),
    "form: update with blank consent wording": Case(
        lambda d: d.api("PATCH", "/forms/default", {"consent_text": "   "}),
        lambda d: d.post_page("/forms/default", form_page(consent_text="   ")),
        "is required",
    ),
    "form: update offering no list": Case(
        lambda d: d.api("PATCH", "/forms/default", {"lists": []}),
        lambda d: d.post_page("/forms/default", form_page(lists=[])),
        "at least",
    ),
    "form: update an unknown form": Case(
        lambda d: d.api("PATCH", "/forms/nope", {"consent_text": "I agree."}),
        lambda d: d.post_page("/forms/nope", form_page()),
        "nope",
    ),
    "digest: create with a bad schedule": Case(
        lambda d: d.api("POST", "/digests", digest_body(schedule="61 7 * * *")),
        lambda d: d.post_page("/digests/new", digest_page(schedule="61 7 * * *")),
        "invalid cron expression",
    ),
    "digest: create with a bad time zone": Case(
        lambda d: d.api("POST", "/digests", digest_body(timezone="Mars/Olympus")),
        lambda d: d.post_page("/digests/new", digest_page(timezone="Mars/Olympus")),
        "unknown time zone",
    ),
    "digest: create with a broken template": Case(
        lambda d: d.api("POST", "/digests", digest_body(html_template="{% for %}")),
        lambda d: d.post_page("/digests/new", digest_page(html_template="{% for %}")),
        "html template",
    ),
    "digest: create on an unknown list": Case(
        lambda d: d.api("POST", "/digests", digest_body(list="nope")),
        lambda d: d.post_page("/digests/new", digest_page(list="nope")),
        "unknown list nope",
    ),
    "digest: create with a too long name": Case(
        lambda d: d.api("POST", "/digests", digest_body(name=LONG_NAME)),
        lambda d: d.post_page("/digests/new", digest_page(name=LONG_NAME)),
        "200 characters",
    ),
    "digest: create with a taken name": Case(
        lambda d: d.api("POST", "/digests", digest_body(name="Morning Brief")),
        lambda d: d.post_page("/digests/new", digest_page(name="Morning Brief")),
        "a digest named 'Morning Brief' exists",
    ),
    "digest: create with no article allowed": Case(
        lambda d: d.api("POST", "/digests", digest_body(max_articles=0)),
        lambda d: d.post_page("/digests/new", digest_page(max_articles="0")),
        "greater than or equal to 1",
    ),
    "digest: create with a size that is no number": Case(
        lambda d: d.api("POST", "/digests", digest_body(max_articles="many")),
        lambda d: d.post_page("/digests/new", digest_page(max_articles="many")),
        "valid integer",
    ),
    "digest: create with neither schedule nor send_at": Case(
        lambda d: d.api("POST", "/digests", digest_body(schedule="")),
        lambda d: d.post_page("/digests/new", digest_page(schedule="")),
        "give a cron schedule or a one-off send_at",
    ),
    "digest: update with a bad schedule": Case(
        lambda d: d.api("PATCH", f"/digests/{d.digest_id}", {"schedule": "7 * *"}),
        lambda d: d.post_page(
            f"/digests/{d.digest_id}", digest_page(name="Morning Brief", schedule="7 * *")
        ),
        "invalid cron expression",
    ),
    "digest: update with too many articles": Case(
        lambda d: d.api("PATCH", f"/digests/{d.digest_id}", {"max_articles": 101}),
        lambda d: d.post_page(
            f"/digests/{d.digest_id}", digest_page(name="Morning Brief", max_articles="101")
        ),
        "less than or equal to 100",
    ),
    "digest: update an unknown digest": Case(
        lambda d: d.api("PATCH", "/digests/999999", {"schedule": "0 7 * * *"}),
        lambda d: d.post_page("/digests/999999", digest_page()),
        "not found",
    ),
    "digest: preview with nothing new": Case(
        lambda d: d.api("GET", f"/digests/{d.digest_id}/preview"),
        lambda d: d.client.get(f"/admin/digests/{d.digest_id}/preview.html"),
        "no new articles since the previous send",
    ),
    "digest: test-send to a bad address": Case(
        lambda d: d.api("POST", f"/digests/{d.digest_id}/test", {"addresses": ["not an address"]}),
        lambda d: d.post_page(f"/digests/{d.digest_id}/test", {"addresses": "not an address"}),
        "email: an email address must have an @-sign",
    ),
    "digest: test-send with nothing new": Case(
        lambda d: d.api("POST", f"/digests/{d.digest_id}/test", {"addresses": ["a@example.org"]}),
        lambda d: d.post_page(f"/digests/{d.digest_id}/test", {"addresses": "a@example.org"}),
        "nothing to preview: no new articles since the previous send",
    ),
    "digest: send now twice in the same moment": Case(
        send_now_twice_by_api,
        send_now_twice_by_page,
        "has already started",
    ),
    "send: pause one that ended": Case(
        lambda d: d.api("POST", f"/sends/{d.send_id}/pause"),
        lambda d: d.post_page(f"/sends/{d.send_id}/pause", {}),
        "a skipped send cannot become paused",
    ),
    "send: resume one that ended": Case(
        lambda d: d.api("POST", f"/sends/{d.send_id}/resume"),
        lambda d: d.post_page(f"/sends/{d.send_id}/resume", {}),
        "a skipped send cannot become queued",
    ),
    "send: cancel one that ended": Case(
        lambda d: d.api("POST", f"/sends/{d.send_id}/cancel"),
        lambda d: d.post_page(f"/sends/{d.send_id}/cancel", {}),
        "a skipped send cannot become cancelled",
    ),
    "send: pause an unknown send": Case(
        lambda d: d.api("POST", "/sends/999999/pause"),
        lambda d: d.post_page("/sends/999999/pause", {}),
        "not found",
    ),
    "article: an image that is no http(s) URL": Case(
        lambda d: d.api("POST", "/articles", article_body(image_url="ftp://example.com/a.png")),
        lambda d: article_page(d, image_url="ftp://example.com/a.png"),
        "must be an http(s) URL, or empty",
    ),
    "article: a blank title": Case(
        lambda d: d.api("POST", "/articles", article_body(title="   ")),
        lambda d: article_page(d, title="   "),
        "is required",
    ),
}


def said(answer: httpx.Response) -> str:
    """What an answer says, as a reader would read it: the API's detail (its messages
    when the schema refused the body), or the page's text."""
    if answer.headers.get("content-type", "").startswith("application/json"):
        detail = answer.json()["detail"]
        if isinstance(detail, list):
            return " ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in detail)
        return str(detail)
    return html.unescape(answer.text)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_api_and_the_pages_refuse_it_alike(desk: Desk, case: Case) -> None:
    by_api, by_page = case.api(desk), case.page(desk)
    assert 400 <= by_api.status_code < 500, by_api.text
    assert 400 <= by_page.status_code < 500, by_page.text[:2000]
    assert by_page.headers["content-type"].startswith("text/html"), "a page, not JSON"
    assert case.reason.lower() in said(by_api).lower(), json.dumps(by_api.json())
    page_text = said(by_page)
    assert case.reason.lower() in page_text.lower(), page_text[:4000]
