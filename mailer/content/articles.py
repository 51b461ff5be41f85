"""Articles: create or update by URL (re-ingesting never duplicates), list, delete."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, String, cast, false, func, or_
from sqlmodel import Session, col, select

from mailer.errors import Conflict, Invalid, NotFound
from mailer.models import Article, DigestArticle

MAX_TOPICS = 20


@dataclass
class ArticleInput:
    url: str
    title: str
    published_at: datetime
    summary: str = ""
    author: str = ""
    image_url: str = ""
    topics: list[str] = field(default_factory=list)


def topic_slug(topic: str) -> str:
    """ "World News" -> "world-news": lower case, words joined by dashes."""
    words = re.findall(r"[^\W_]+", topic.lower())
    return "-".join(words)[:64]


def normalize_topics(topics: list[str]) -> list[str]:
    """Topic slugs, unique, in their first order."""
    cleaned = [slug for slug in (topic_slug(topic) for topic in topics) if slug]
    if len(cleaned) > MAX_TOPICS:
        raise Invalid("topics", f"at most {MAX_TOPICS} topics")
    return list(dict.fromkeys(cleaned))


def has_any_topic(topics: list[str]) -> ColumnElement[bool]:
    """Articles carrying at least one of `topics` (slugs hold no LIKE wildcards or quotes);
    none when no topic is left after normalizing (e.g. ":")."""
    stored = cast(col(Article.topics), String)
    return or_(false(), *(stored.like(f'%"{topic}"%') for topic in normalize_topics(topics)))


def upsert(session: Session, data: ArticleInput, now: datetime) -> tuple[Article, bool]:
    """Store the article; returns it and whether it was new."""
    if not data.url.startswith(("http://", "https://")):
        raise Invalid("url", "must be an http(s) URL")
    if not data.title.strip():
        raise Invalid("title", "is required")
    if data.image_url and not data.image_url.startswith(("http://", "https://")):
        raise Invalid("image_url", "must be an http(s) URL, or empty")  # the digest's <img>
    existing = session.exec(select(Article).where(col(Article.url) == data.url)).first()
    article = existing or Article(
        url=data.url, title="", published_at=now, created_at=now, updated_at=now
    )
    article.title = data.title.strip()
    article.summary = data.summary
    article.author = data.author
    article.image_url = data.image_url
    article.topics = normalize_topics(data.topics)
    article.published_at = data.published_at
    article.updated_at = now
    session.add(article)
    session.flush()
    return article, existing is None


def search(
    session: Session, topic: str | None, query: str | None, limit: int, offset: int
) -> list[Article]:
    """Newest first; `topic` filters by topic, `query` by words in the title."""
    statement = (
        select(Article)
        .order_by(col(Article.published_at).desc(), col(Article.id).desc())
        .limit(limit)
        .offset(offset)
    )
    if query:
        statement = statement.where(func.lower(Article.title).contains(query.lower()))
    if topic:
        statement = statement.where(has_any_topic([topic]))
    return list(session.exec(statement))


def get(session: Session, article_id: int) -> Article:
    article = session.get(Article, article_id)
    if article is None:
        raise NotFound("article")
    return article


def carried(session: Session, article_id: int) -> bool:
    """Whether a digest has sent this article (it is then kept for the archive)."""
    found = session.exec(
        select(DigestArticle.send_id).where(col(DigestArticle.article_id) == article_id)
    ).first()
    return found is not None


def delete(session: Session, article_id: int) -> None:
    """Remove an article that no digest has carried yet."""
    article = get(session, article_id)
    if carried(session, article_id):
        raise Conflict("the article went out in a digest and is kept for its archive")
    session.delete(article)


def recent_topics(session: Session, sample: int = 500) -> list[str]:
    """The topics of the latest `sample` articles, sorted: choices for a topic filter."""
    rows = session.exec(
        select(Article.topics).order_by(col(Article.published_at).desc()).limit(sample)
    )
    return sorted({topic for topics in rows for topic in topics})
