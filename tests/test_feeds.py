"""Feed polling against a real HTTP server: RSS, Atom, re-polls, broken and unreachable feeds."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.app import create_app
from mailer.clock import FrozenClock
from mailer.jobs import poll_due_feeds
from mailer.models import Article
from mailer.services import Services
from tests.conftest import count_rows, free_port
from tests.peers import RSS, FeedServer

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Science</title><id>urn:x</id>
<updated>2026-11-23T08:00:00Z</updated>
<entry><title>Comet spotted</title><id>urn:1</id>
<link href="https://news.example.com/science/comet"/>
<updated>2026-11-23T08:00:00Z</updated><summary>Bright and near.</summary>
<category term="science"/></entry>
</feed>"""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """The feed servers run on this machine, which outbound requests may not reach else."""
    return {"network": {"allowed_private_networks": ["127.0.0.0/8", "::1/128"]}}


def add_feed(editor: TestClient, url: str, **extra: Any) -> dict[str, Any]:
    answer = editor.post("/api/v1/feeds", json={"url": url, **extra})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def articles(editor: TestClient) -> dict[str, dict[str, Any]]:
    return {a["url"]: a for a in editor.get("/api/v1/articles").json()}


def test_an_rss_feed_becomes_articles_with_mapped_topics(
    editor: TestClient, services: Services, feed_server: FeedServer
) -> None:
    feed_server.pages["/rss"] = (200, RSS.format(second_title="Flu season"))
    feed = add_feed(
        editor,
        feed_server.base + "/rss",
        topic_map={"World News": "world", "Gesundheit": "health"},
        default_topics=["homepage"],
    )
    outcome = editor.post(f"/api/v1/feeds/{feed['id']}/poll").json()
    assert outcome == {"status": "ok", "new": 2, "updated": 0, "error": ""}
    stored = articles(editor)
    talks = stored["https://news.example.com/world/talks"]
    assert talks["title"] == "Ceasefire talks resume"
    assert talks["summary"] == "Negotiators met again on Monday."
    assert talks["topics"] == ["world", "homepage"]
    assert talks["image_url"] == "https://img.example.com/talks.jpg"
    assert talks["published_at"].startswith("2026-11-23T06:30:00")
    assert stored["https://news.example.com/health/flu"]["topics"] == ["health", "homepage"]


@pytest.mark.both_databases
def test_polling_again_updates_and_never_duplicates(
    editor: TestClient, services: Services, feed_server: FeedServer
) -> None:
    feed_server.pages["/rss"] = (200, RSS.format(second_title="Flu season"))
    feed = add_feed(editor, feed_server.base + "/rss")
    editor.post(f"/api/v1/feeds/{feed['id']}/poll")
    feed_server.pages["/rss"] = (200, RSS.format(second_title="Flu season starts early"))
    outcome = editor.post(f"/api/v1/feeds/{feed['id']}/poll").json()
    assert (outcome["new"], outcome["updated"]) == (0, 2)
    assert count_rows(services, Article) == 2
    assert articles(editor)["https://news.example.com/health/flu"]["title"] == (
        "Flu season starts early"
    )


def test_an_atom_feed_is_read_too(editor: TestClient, feed_server: FeedServer) -> None:
    feed_server.pages["/atom"] = (200, ATOM)
    feed = add_feed(editor, feed_server.base + "/atom")
    assert editor.post(f"/api/v1/feeds/{feed['id']}/poll").json()["new"] == 1
    assert articles(editor)["https://news.example.com/science/comet"]["topics"] == ["science"]


@pytest.mark.parametrize(
    "page",
    [
        (200, "<html><body>This is not a feed"),
        (200, "<rss><channel><item><title>x"),
        (500, "server error"),
        (404, "gone"),
    ],
)
def test_a_broken_feed_is_recorded_and_harms_nothing(
    editor: TestClient,
    services: Services,
    feed_server: FeedServer,
    clock: FrozenClock,
    page: tuple[int, str],
) -> None:
    feed_server.pages["/bad"] = page
    feed_server.pages["/rss"] = (200, RSS.format(second_title="Flu season"))
    bad = add_feed(editor, feed_server.base + "/bad")
    good = add_feed(editor, feed_server.base + "/rss")
    outcomes = poll_due_feeds(services)
    assert outcomes == {bad["id"]: "error", good["id"]: "ok"}
    listed = {f["id"]: f for f in editor.get("/api/v1/feeds").json()}
    assert listed[bad["id"]]["last_status"] == "error"
    assert listed[bad["id"]]["last_error"]
    assert count_rows(services, Article) == 2, "only the good feed's articles"
    assert poll_due_feeds(services) == {}, "not polled again before its time"
    clock.advance(minutes=16)
    assert poll_due_feeds(services) == {good["id"]: "ok"}, "the failing feed backs off"
    clock.advance(minutes=20)
    assert poll_due_feeds(services)[bad["id"]] == "error", "and is retried later"


def test_an_unreachable_feed_is_an_error_not_a_crash(
    editor: TestClient, services: Services
) -> None:
    feed = add_feed(editor, f"http://127.0.0.1:{free_port()}/feed.xml")
    outcome = editor.post(f"/api/v1/feeds/{feed['id']}/poll").json()
    assert outcome["status"] == "error" and outcome["error"]
    assert count_rows(services, Article) == 0


def test_feeds_need_an_http_url_and_are_unique(editor: TestClient) -> None:
    assert editor.post("/api/v1/feeds", json={"url": "file:///etc/passwd"}).status_code == 422
    add_feed(editor, "https://news.example.com/rss")
    assert (
        editor.post("/api/v1/feeds", json={"url": "https://news.example.com/rss"}).status_code
        == 409
    )
    assert editor.post("/api/v1/feeds/999/poll").status_code == 404


@pytest.mark.both_databases
@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "feeds": {"check_interval_seconds": 0.05},
            "network": {"allowed_private_networks": ["127.0.0.0/8"]},
        }
    ],
)
def test_a_running_server_polls_a_due_feed_by_itself(
    editor: TestClient, services: Services, feed_server: FeedServer
) -> None:
    feed_server.pages["/rss"] = (200, RSS.format(second_title="Flu season"))
    add_feed(editor, feed_server.base + "/rss")
    assert count_rows(services, Article) == 0
    with TestClient(create_app(services, run_sender=False)):
        deadline = time.monotonic() + 10
        while count_rows(services, Article) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert set(articles(editor)) == {
        "https://news.example.com/world/talks",
        "https://news.example.com/health/flu",
    }
