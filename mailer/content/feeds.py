"""RSS and Atom feeds: fetch (through mailer.outbound), parse (feedparser), store entries
as articles.

A broken or unreachable feed is recorded on its row (status, error, back-off) and never
raises out of a poll, so one bad feed cannot stop the scheduler or the other feeds. A feed
at a private address (or redirected to one) is never fetched: its error says so.
"""

from __future__ import annotations

import calendar
import html
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser
import httpx
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from mailer.content.articles import ArticleInput, normalize_topics, topic_slug, upsert
from mailer.db import session_scope
from mailer.errors import Conflict, Invalid, NotFound
from mailer.models import Feed
from mailer.outbound import REFUSED, Outbound, describe

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 20.0
MAX_FEED_BYTES = 5_000_000
MAX_BACKOFF = timedelta(hours=6)
_TAG = re.compile(r"<[^>]+>")


@dataclass
class Fetched:
    status: int
    body: bytes
    etag: str = ""
    modified: str = ""


@dataclass
class PollResult:
    status: str  # "ok", "not-modified" or "error"
    new: int = 0
    updated: int = 0
    error: str = ""


def fetch(feed: Feed, outbound: Outbound) -> Fetched:
    """GET the feed, conditional on its ETag / Last-Modified, following redirects (each
    hop checked). Raises httpx.HTTPError, or ValueError for a feed that is too large."""
    headers = {
        "User-Agent": "mailer feed reader",
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
    }
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.modified:
        headers["If-Modified-Since"] = feed.modified
    with (
        outbound.client(timeout=FETCH_TIMEOUT, follow_redirects=True) as client,
        client.stream("GET", feed.url, headers=headers) as response,
    ):
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_FEED_BYTES:
                raise ValueError(f"feed larger than {MAX_FEED_BYTES} bytes")
        return Fetched(
            response.status_code,
            body,
            response.headers.get("etag", ""),
            response.headers.get("last-modified", ""),
        )


def _text(value: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", value or "")).split())


def _published(entry: Any, fallback: datetime) -> datetime:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if parsed:
        return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
    return fallback


def _image(entry: Any) -> str:
    for media in entry.get("media_content", []) + entry.get("media_thumbnail", []):
        if media.get("url"):
            return str(media["url"])
    for enclosure in entry.get("enclosures", []):
        if str(enclosure.get("type", "")).startswith("image/") and enclosure.get("href"):
            return str(enclosure["href"])
    return ""


def entries_as_articles(feed: Feed, body: bytes, now: datetime) -> list[ArticleInput]:
    """The feed's entries as articles; raises ValueError when nothing can be read."""
    parsed = feedparser.parse(body)
    if not parsed.entries and (parsed.bozo or not parsed.get("version")):
        reason = parsed.get("bozo_exception") or "no RSS or Atom found"
        raise ValueError(f"not a readable feed: {reason}")
    mapping = {topic_slug(k): v for k, v in feed.topic_map.items()}
    articles = []
    for entry in parsed.entries:
        link, title = entry.get("link", ""), _text(entry.get("title", ""))
        if not link.startswith(("http://", "https://")) or not title:
            continue
        categories = [topic_slug(tag.get("term", "")) for tag in entry.get("tags", [])]
        topics = [mapping.get(c, c) for c in categories if c] + list(feed.default_topics)
        articles.append(
            ArticleInput(
                url=link[:2000],
                title=title[:1000],
                summary=_text(entry.get("summary", ""))[:5000],
                author=_text(entry.get("author", ""))[:300],
                image_url=_image(entry)[:2000],
                topics=normalize_topics(topics)[:20],
                published_at=_published(entry, now),
            )
        )
    if parsed.bozo and not articles:
        raise ValueError(f"not a readable feed: {parsed.get('bozo_exception', 'parse error')}")
    return articles


def poll(engine: Engine, outbound: Outbound, feed_id: int, now: datetime) -> PollResult:
    """Fetch and store one feed, recording the outcome on its row. Never raises."""
    with session_scope(engine) as session:
        feed = session.get(Feed, feed_id)
        if feed is None:
            return PollResult("error", error="feed is gone")
    try:
        fetched = fetch(feed, outbound)
        if fetched.status == 304:
            result = PollResult("not-modified")
        elif fetched.status >= 400:
            raise ValueError(f"HTTP {fetched.status}")
        else:
            found = entries_as_articles(feed, fetched.body, now)
            result = PollResult("ok")
            with session_scope(engine) as session:
                for item in found:
                    _, created = upsert(session, item, now)
                    result.new += created
                    result.updated += not created
    except (httpx.HTTPError, OSError) as exc:
        # What went wrong in kind, never the connection's details (no network map).
        result = PollResult("error", error=describe(exc))
        log.warning("feed %s: %s (%s)", feed.url, result.error, type(exc).__name__)
    except ValueError as exc:
        result = PollResult("error", error=str(exc) or exc.__class__.__name__)
        log.warning("feed %s: %s", feed.url, result.error)
    _record(engine, feed_id, result, now, fetched if result.status == "ok" else None)
    return result


def poll_now(engine: Engine, outbound: Outbound, feed_id: int, now: datetime) -> PollResult:
    """Poll one feed at an editor's request; NotFound when there is no such feed."""
    with session_scope(engine) as session:
        get(session, feed_id)
    return poll(engine, outbound, feed_id, now)


def _record(
    engine: Engine, feed_id: int, result: PollResult, now: datetime, fetched: Fetched | None
) -> None:
    with session_scope(engine) as session:
        feed = session.get(Feed, feed_id)
        if feed is None:
            return
        feed.last_polled_at = now
        feed.last_status = result.status
        feed.last_error = result.error
        feed.last_new = result.new
        feed.failures = feed.failures + 1 if result.status == "error" else 0
        if fetched is not None:
            feed.etag, feed.modified = fetched.etag[:500], fetched.modified[:200]
        interval = timedelta(minutes=feed.interval_minutes)
        # A failing feed is retried, less and less often, up to MAX_BACKOFF.
        delay = min(interval * 2 ** min(feed.failures, 10), max(MAX_BACKOFF, interval))
        feed.next_poll_at = now + (delay if feed.failures else interval)
        session.add(feed)


def due(session: Session, now: datetime) -> list[int]:
    return [
        feed_id
        for feed_id in session.exec(
            select(Feed.id).where(col(Feed.enabled), col(Feed.next_poll_at) <= now)
        )
        if feed_id is not None
    ]


def create(session: Session, fields: dict[str, Any], outbound: Outbound, now: datetime) -> Feed:
    """A new feed, due at once; a URL whose host is a refused address (any spelling) or
    this machine is refused here already, other names when each poll connects."""
    url = fields["url"]
    if not url.startswith(("http://", "https://")):
        raise Invalid("url", "must be an http(s) URL")
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL as exc:
        raise Invalid("url", "not a valid URL") from exc
    if not host:
        raise Invalid("url", "has no host")
    if outbound.refuses_without_lookup(host):
        raise Invalid("url", REFUSED)
    if session.exec(select(Feed).where(col(Feed.url) == url)).first():
        raise Conflict("this feed exists")
    feed = Feed(**fields, created_at=now, next_poll_at=now)
    feed.default_topics = normalize_topics(feed.default_topics)
    feed.topic_map = {k: topic_slug(v) for k, v in feed.topic_map.items() if topic_slug(v)}
    session.add(feed)
    session.flush()
    return feed


def get(session: Session, feed_id: int) -> Feed:
    feed = session.get(Feed, feed_id)
    if feed is None:
        raise NotFound("feed")
    return feed


def delete(session: Session, feed_id: int) -> None:
    """Stop polling a feed; the articles it brought stay."""
    session.delete(get(session, feed_id))


def all_feeds(session: Session) -> list[Feed]:
    return list(session.exec(select(Feed).order_by(col(Feed.id))))
