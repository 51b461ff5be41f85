"""What a digest says: the articles published in its window that it has not carried yet."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from mailer.content.articles import has_any_topic
from mailer.models import Article, Digest, DigestArticle


def select_articles(
    session: Session,
    digest: Digest,
    window_start: datetime,
    window_end: datetime,
    topics: list[str] | None = None,
) -> list[Article]:
    """Newest first, at most `digest.max_articles`, matching `topics` (default: the
    digest's; any of them, when set)."""
    topics = digest.topics if topics is None else topics
    carried = select(DigestArticle.article_id).where(col(DigestArticle.digest_id) == digest.id)
    statement = (
        select(Article)
        .where(
            col(Article.published_at) > window_start,
            col(Article.published_at) <= window_end,
            col(Article.id).not_in(carried),
        )
        .order_by(col(Article.published_at).desc(), col(Article.id).desc())
        .limit(digest.max_articles)
    )
    if topics:
        statement = statement.where(has_any_topic(topics))
    return list(session.exec(statement))
