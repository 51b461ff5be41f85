"""The Articles pages of /admin/: the list and its topic filter, editing and deleting an
article as the editors' API would, and the feeds with their last poll result."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from tests.admin import csrf_of
from tests.conftest import SmtpSink
from tests.factories import article, confirm_readers, morning_brief, send_now
from tests.peers import RSS, FeedServer


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """The feed servers run on this machine, which outbound requests may not reach else."""
    return {"network": {"allowed_private_networks": ["127.0.0.0/8", "::1/128"]}}


def titles(page: str) -> list[str]:
    """The titles in the article list, in page order."""
    return re.findall(
        r'<td><a href="https://[^"]+" rel="noopener noreferrer"[^>]*>([^<]+)</a>', page
    )


def edit(client: TestClient, article_id: int, **changes: str) -> Any:
    form = client.get(f"/admin/articles/{article_id}").text
    fields = {
        name: re.search(rf'name="{name}" value="([^"]*)"', form).group(1)  # type: ignore[union-attr]
        for name in ("title", "author", "image_url", "topics", "published_at")
    }
    fields["summary"] = re.search(r'name="summary"[^>]*>([^<]*)</textarea>', form).group(1)  # type: ignore[union-attr]
    return client.post(
        f"/admin/articles/{article_id}",
        data={**fields, **changes, "csrf": csrf_of(form)},
        follow_redirects=False,
    )


def test_the_topic_filter_shows_only_articles_on_that_topic_newest_first(
    signed_in: TestClient, editor: TestClient, clock: FrozenClock
) -> None:
    article(editor, clock, 1, ["World"], "Talks resume", hours_ago=3)
    article(editor, clock, 2, ["Health"], "Flu season starts", hours_ago=2)
    article(editor, clock, 3, ["World", "Europe"], "Bridge approved", hours_ago=1)

    everything = signed_in.get("/admin/articles")
    assert everything.status_code == 200
    assert titles(everything.text) == ["Bridge approved", "Flu season starts", "Talks resume"]
    assert '<option value="world">world</option>' in everything.text, "known topics offered"
    assert '<a class="badge" href="/admin/articles?topic=europe">europe</a>' in everything.text

    world = signed_in.get("/admin/articles", params={"topic": "world"})
    assert titles(world.text) == ["Bridge approved", "Talks resume"]
    assert '<option value="world" selected>' in world.text
    health = signed_in.get("/admin/articles", params={"topic": "Health"})
    assert titles(health.text) == ["Flu season starts"]
    nothing = signed_in.get("/admin/articles", params={"topic": "sport"})
    assert titles(nothing.text) == [] and "No articles match these filters." in nothing.text
    assert titles(signed_in.get("/admin/articles", params={"q": "BRIDGE"}).text) == [
        "Bridge approved"
    ]


def test_an_edit_is_what_the_api_then_returns(
    signed_in: TestClient, editor: TestClient, clock: FrozenClock
) -> None:
    story = article(editor, clock, 1, ["World"], "Talks resume")
    saved = edit(
        signed_in,
        story["id"],
        title="Ceasefire talks resume in Geneva",
        author="World Desk",
        topics="World, Diplomacy",
        image_url="https://img.example.com/talks.jpg",
        published_at="2026-11-20T06:30:00",
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/admin/articles/{story['id']}?notice=saved"
    assert "Saved." in signed_in.get(saved.headers["location"]).text

    stored = editor.get(f"/api/v1/articles/{story['id']}").json()
    assert stored["title"] == "Ceasefire talks resume in Geneva"
    assert stored["author"] == "World Desk"
    assert stored["topics"] == ["world", "diplomacy"]
    assert stored["image_url"] == "https://img.example.com/talks.jpg"
    assert stored["published_at"].startswith("2026-11-20T06:30:00")
    assert stored["url"] == story["url"], "the URL identifies the article and stays"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": "   "}, "Title: is required."),
        ({"image_url": "javascript:alert(1)"}, "Image URL: must be an http(s) URL, or empty."),
        ({"published_at": "next tuesday"}, "Published: must be a date and time."),
        ({"topics": ",".join(f"t{n}" for n in range(21))}, "Topics: List should have at most 20"),
        ({"title": "x" * 1001}, "Title: String should have at most 1000 characters."),
    ],
)
def test_bad_input_shows_the_form_again_and_writes_nothing(
    signed_in: TestClient,
    editor: TestClient,
    clock: FrozenClock,
    changes: dict[str, str],
    message: str,
) -> None:
    story = article(editor, clock, 1, ["World"], "Talks resume")
    refused = edit(signed_in, story["id"], author="Someone Else", **changes)
    assert refused.status_code == 422
    assert message in refused.text
    assert 'value="Someone Else"' in refused.text, "what was typed is kept"
    assert editor.get(f"/api/v1/articles/{story['id']}").json() == story, "nothing written"


def test_an_article_is_deleted_after_confirming(
    signed_in: TestClient, editor: TestClient, clock: FrozenClock
) -> None:
    story = article(editor, clock, 1, ["World"], "Talks resume")
    page = signed_in.get(f"/admin/articles/{story['id']}")
    assert f'href="/admin/articles/{story["id"]}/delete"' in page.text
    confirm = signed_in.get(f"/admin/articles/{story['id']}/delete")
    assert "Delete “Talks resume”?" in confirm.text
    assert signed_in.post(f"/admin/articles/{story['id']}/delete").status_code == 403, "no CSRF"

    deleted = signed_in.post(
        f"/admin/articles/{story['id']}/delete",
        data={"csrf": csrf_of(confirm.text)},
        follow_redirects=False,
    )
    assert deleted.status_code == 303 and deleted.headers["location"].endswith("notice=deleted")
    assert editor.get(f"/api/v1/articles/{story['id']}").status_code == 404
    assert titles(signed_in.get("/admin/articles").text) == []
    assert signed_in.get(f"/admin/articles/{story['id']}").status_code == 404


def test_an_article_that_went_out_in_a_digest_is_kept_and_the_page_says_why(
    signed_in: TestClient, editor: TestClient, clock: FrozenClock, smtp: SmtpSink
) -> None:
    confirm_readers(editor, smtp, ["ada@example.com"])
    story = article(editor, clock, 1, ["world"], "Talks resume")
    send_now(editor, morning_brief(editor)["id"])

    page = signed_in.get(f"/admin/articles/{story['id']}")
    assert "went out in a digest" in page.text
    assert f'href="/admin/articles/{story["id"]}/delete"' not in page.text
    refused = signed_in.post(
        f"/admin/articles/{story['id']}/delete",
        data={"csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert refused.status_code == 409
    assert "cannot be deleted" in refused.text
    assert editor.delete(f"/api/v1/articles/{story['id']}").status_code == 409, "as the API"
    assert editor.get(f"/api/v1/articles/{story['id']}").status_code == 200


def test_the_feeds_page_adds_polls_and_removes_a_feed_showing_the_last_result(
    signed_in: TestClient, editor: TestClient, feed_server: FeedServer
) -> None:
    feed_server.pages["/rss"] = (200, RSS.format(second_title="Flu season"))
    page = signed_in.get("/admin/articles/feeds")
    assert page.status_code == 200 and "No feeds yet." in page.text
    token = csrf_of(page.text)

    added = signed_in.post(
        "/admin/articles/feeds",
        data={
            "url": feed_server.base + "/rss",
            "name": "Example News",
            "topics": "Homepage",
            "interval_minutes": "30",
            "csrf": token,
        },
        follow_redirects=False,
    )
    assert added.status_code == 303
    [feed] = editor.get("/api/v1/feeds").json()
    assert (feed["name"], feed["default_topics"], feed["interval_minutes"]) == (
        "Example News",
        ["homepage"],
        30,
    )
    assert "not yet" in signed_in.get("/admin/articles/feeds").text

    polled = signed_in.post(
        f"/admin/articles/feeds/{feed['id']}/poll", data={"csrf": token}, follow_redirects=False
    )
    assert polled.status_code == 303
    shown = signed_in.get(polled.headers["location"])
    assert "The feed was polled" in shown.text
    assert '<span class="badge ok">OK</span> 2 new articles' in shown.text
    assert len(editor.get("/api/v1/articles").json()) == 2

    feed_server.pages["/rss"] = (500, "down for maintenance")
    signed_in.post(f"/admin/articles/feeds/{feed['id']}/poll", data={"csrf": token})
    broken = signed_in.get("/admin/articles/feeds")
    assert '<span class="badge failed">Error</span>' in broken.text
    assert '<span class="poll-error">HTTP 500</span>' in broken.text

    twice = signed_in.post(
        "/admin/articles/feeds", data={"url": feed_server.base + "/rss", "csrf": token}
    )
    assert twice.status_code == 409 and "exists already" in twice.text
    bad = signed_in.post("/admin/articles/feeds", data={"url": "ftp://x.example", "csrf": token})
    assert bad.status_code == 422 and "URL" in bad.text
    assert len(editor.get("/api/v1/feeds").json()) == 1, "refusals add nothing"
    forged = signed_in.post(f"/admin/articles/feeds/{feed['id']}/poll", data={"csrf": "no"})
    assert forged.status_code == 403

    removed = signed_in.post(
        f"/admin/articles/feeds/{feed['id']}/delete", data={"csrf": token}, follow_redirects=False
    )
    assert removed.status_code == 303
    assert editor.get("/api/v1/feeds").json() == []
    assert len(editor.get("/api/v1/articles").json()) == 2, "its articles stay"
