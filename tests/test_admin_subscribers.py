"""The Subscribers pages of /admin/: finding a reader by address (a form post, never a
URL), their consent history as a timeline with the exact wording, export, and erasure
behind a confirmation."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.services import Services
from tests.admin import csrf_of
from tests.conftest import SmtpSink
from tests.factories import BROWSER, DEFAULT_WORDING, READER, confirmed_reader_id, find, sign_up

SPORT_WORDING = 'Yes, send me "Sport Weekly" & its <offers>.'


def csrf(client: TestClient) -> str:
    return csrf_of(client.get("/admin/subscribers").text)


def search(client: TestClient, typed: str, token: str | None = None) -> Any:
    return client.post(
        "/admin/subscribers/search",
        data={"email": typed, "csrf": token if token is not None else csrf(client)},
        follow_redirects=False,
    )


def timeline(page: str) -> list[dict[str, str]]:
    """Each event of the consent timeline as an editor reads it, in page order."""
    events = []
    for item in re.findall(r'<li class="event [^"]*">(.*?)</li>', page, re.S):
        facts = dict(re.findall(r"<dt>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", item, re.S))
        wording = re.search(r'<blockquote class="wording">(.*?)</blockquote>', item, re.S)
        events.append(
            {
                "action": re.search(r'<span class="action">(.*?)</span>', item).group(1),  # type: ignore[union-attr]
                "time": re.search(r'<time datetime="([^"]+)"', item).group(1),  # type: ignore[union-attr]
                "form": facts["Form"],
                "lists": facts["Lists"],
                "wording": html.unescape(wording.group(1)) if wording else "",
                "version": facts["Wording version"],
                "ip": facts["IP address"],
                "browser": html.unescape(facts["Browser"]),
            }
        )
    return events


def test_an_address_typed_into_the_search_opens_its_subscriber_and_never_enters_a_url(
    signed_in: TestClient, smtp: SmtpSink, services: Services
) -> None:
    reader_id = confirmed_reader_id(signed_in, smtp, services)
    sign_up(signed_in, "second@example.com")
    smtp.wait_for(2)

    listing = signed_in.get("/admin/subscribers")
    assert listing.status_code == 200
    assert listing.text.index("second@example.com") < listing.text.index(READER), "newest first"
    assert '<span class="badge confirmed">news: confirmed</span>' in listing.text
    assert '<span class="badge pending">news: pending</span>' in listing.text
    hrefs = re.findall(r'href="([^"]*)"', listing.text)
    assert f"/admin/subscribers/{reader_id}" in hrefs
    assert not [href for href in hrefs if "@" in href], "no address in any link"

    pending = signed_in.get("/admin/subscribers", params={"list": "news", "status": "pending"})
    assert "second@example.com" in pending.text and READER not in pending.text

    found = search(signed_in, "  Reader@EXAMPLE.com ")
    assert found.status_code == 303
    location = found.headers["location"]
    assert location == f"/admin/subscribers/{reader_id}"
    page = signed_in.get(location)
    assert f"<h1>{READER}</h1>" in page.text

    part = search(signed_in, "READER@")
    assert part.status_code == 303 and part.headers["location"] == location, "one match opens it"
    several = search(signed_in, "example.com")
    assert several.status_code == 200
    assert READER in several.text and "second@example.com" in several.text
    for answer in (found, part, several):
        assert "@" not in answer.headers.get("location", "") and "example" not in str(answer.url)

    missing = search(signed_in, "nobody@example.com")
    assert missing.status_code == 200
    assert "No subscriber with that address." in missing.text
    assert search(signed_in, "100%_").status_code == 200, "wildcards are plain characters"
    assert "Type an address" in search(signed_in, "   ").text


def test_the_timeline_shows_each_event_with_the_exact_wording_and_its_version_in_order(
    signed_in: TestClient, editor: TestClient, smtp: SmtpSink, services: Services
) -> None:
    reader_id = confirmed_reader_id(signed_in, smtp, services)
    editor.patch("/api/v1/forms/default", json={"consent_text": "Newer words for later readers."})
    assert editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport"}).status_code == 201
    made = editor.post(
        "/api/v1/forms",
        json={"slug": "sport", "lists": ["sport"], "consent_text": SPORT_WORDING},
    )
    assert made.status_code == 201
    assert sign_up(signed_in, form="sport").status_code == 202

    page = signed_in.get(f"/admin/subscribers/{reader_id}")
    assert page.status_code == 200
    events = timeline(page.text)
    assert [(e["action"], e["form"], e["lists"], e["wording"], e["version"]) for e in events] == [
        ("requested", "default", "news", DEFAULT_WORDING, "1"),
        ("confirmed", "default", "news", DEFAULT_WORDING, "1"),
        ("requested", "sport", "sport", SPORT_WORDING, "1"),
    ]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events), "oldest first"
    assert all(e["time"].endswith("Z") for e in events), "times are UTC"
    assert events[0]["ip"] == "203.0.113.7" and events[0]["browser"] == BROWSER
    assert "Oldest first" in page.text
    assert "Chain verified:" in page.text and "all 3 events are intact" in page.text
    assert '<span class="badge pending">pending</span>' in page.text
    assert "&lt;offers&gt;" in page.text, "the wording is shown as text, not markup"


@pytest.mark.both_databases
def test_erasing_needs_the_box_ticked_and_leaves_a_history_that_still_verifies(
    signed_in: TestClient, editor: TestClient, smtp: SmtpSink, services: Services
) -> None:
    reader_id = confirmed_reader_id(signed_in, smtp, services)
    detail = signed_in.get(f"/admin/subscribers/{reader_id}")
    assert f'href="/admin/subscribers/{reader_id}/erase"' in detail.text
    confirm = signed_in.get(f"/admin/subscribers/{reader_id}/erase")
    assert "I understand this cannot be undone" in confirm.text
    token = csrf_of(confirm.text)

    unticked = signed_in.post(
        f"/admin/subscribers/{reader_id}/erase", data={"csrf": token}, follow_redirects=False
    )
    assert unticked.status_code == 422
    assert "Tick “I understand this cannot be undone”" in unticked.text
    assert [s["email"] for s in find(editor)] == [READER], "nothing was erased"

    erased = signed_in.post(
        f"/admin/subscribers/{reader_id}/erase",
        data={"csrf": token, "understood": "yes"},
        follow_redirects=False,
    )
    assert erased.status_code == 303
    assert erased.headers["location"] == f"/admin/subscribers/{reader_id}?notice=erased"
    page = signed_in.get(erased.headers["location"])
    assert "The subscriber was erased." in page.text
    assert f"Erased subscriber #{reader_id}" in page.text
    assert READER not in page.text and "203.0.113.7" not in page.text and BROWSER not in page.text
    events = timeline(page.text)
    assert [e["action"] for e in events] == ["requested", "confirmed", "erased"]
    assert events[0]["wording"] == DEFAULT_WORDING, "the wording stays; it is not personal"
    assert "Chain verified:" in page.text
    assert find(editor) == []
    check = editor.get(f"/api/v1/subscribers/{reader_id}/consent/verify").json()
    assert check["valid"] is True and check["events"] == 3


def test_the_export_has_the_confirmed_subscriber_and_their_own_data_in_full(
    signed_in: TestClient, smtp: SmtpSink, client: TestClient, services: Services
) -> None:
    reader_id = confirmed_reader_id(signed_in, smtp, services)
    detail = signed_in.get("/admin/subscribers")
    assert 'action="/admin/subscribers/export.csv"' in detail.text

    answer = signed_in.get("/admin/subscribers/export.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(r["email"], r["list"], r["status"]) for r in rows] == [(READER, "news", "confirmed")]
    only_news = signed_in.get("/admin/subscribers/export.csv", params={"list": "news"})
    assert READER in only_news.text
    none = signed_in.get("/admin/subscribers/export.csv", params={"list": "sport"})
    assert READER not in none.text

    held = signed_in.get(f"/admin/subscribers/{reader_id}/export.json")
    assert held.status_code == 200 and "attachment" in held.headers["content-disposition"]
    data = held.json()
    assert data["email"] == READER
    assert [e["action"] for e in data["consent_events"]] == ["requested", "confirmed"]
    assert data["consent_events"][0]["consent_text"] == DEFAULT_WORDING
    assert data["consent_chain"]["valid"] is True

    client.cookies.clear()
    assert client.get("/admin/subscribers/export.csv", follow_redirects=False).status_code == 303
    assert client.get(f"/admin/subscribers/{reader_id}", follow_redirects=False).status_code == 303


def test_posts_without_the_session_s_csrf_token_are_refused(
    signed_in: TestClient, editor: TestClient, smtp: SmtpSink, services: Services
) -> None:
    reader_id = confirmed_reader_id(signed_in, smtp, services)
    assert search(signed_in, READER, token="").status_code == 403
    assert search(signed_in, READER, token="forged").status_code == 403
    refused = signed_in.post(
        f"/admin/subscribers/{reader_id}/erase",
        data={"understood": "yes"},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    assert [s["email"] for s in find(editor)] == [READER], "nothing was erased"


def test_an_unknown_subscriber_is_a_404_page(signed_in: TestClient) -> None:
    missing = signed_in.get("/admin/subscribers/999999")
    assert missing.status_code == 404 and "Not found" in missing.text
    assert signed_in.get("/admin/subscribers/999999/erase").status_code == 404
