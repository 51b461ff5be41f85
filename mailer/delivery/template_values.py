"""What mail templates see of lists, digests and articles: frozen copies of the fields a
template may show, never database rows (a row carries its session, SQLAlchemy's
machinery and methods that write, such as `sqlmodel_update`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mailer.models import Article, Digest, MailingList


@dataclass(frozen=True, slots=True)
class ListValues:
    """A list as templates see it: `{{ list.name }}`."""

    slug: str
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class DigestValues:
    """A digest as templates see it: `{{ digest.name }}`."""

    name: str
    topics: tuple[str, ...]
    max_articles: int


@dataclass(frozen=True, slots=True)
class ArticleValues:
    """An article as templates see it: `{{ article.title }}`, `{{ article.url }}`, ..."""

    url: str
    title: str
    summary: str
    author: str
    image_url: str
    topics: tuple[str, ...]
    published_at: datetime


def list_values(mailing_list: MailingList) -> ListValues:
    return ListValues(
        slug=mailing_list.slug, name=mailing_list.name, description=mailing_list.description
    )


def digest_values(digest: Digest) -> DigestValues:
    return DigestValues(
        name=digest.name, topics=tuple(digest.topics), max_articles=digest.max_articles
    )


def article_values(article: Article) -> ArticleValues:
    return ArticleValues(
        url=article.url,
        title=article.title,
        summary=article.summary,
        author=article.author,
        image_url=article.image_url,
        topics=tuple(article.topics),
        published_at=article.published_at,
    )


def articles_values(articles: list[Article]) -> tuple[ArticleValues, ...]:
    """The articles in their order, as templates see them."""
    return tuple(article_values(article) for article in articles)


SAMPLE_SUMMARY = (
    "A sample article's summary, about as long as a real one: two or three sentences that "
    "tell the reader what happened, where, and why it matters to them this morning."
)


def sample_context(name: str, topics: list[str], max_articles: int) -> dict[str, Any]:
    """Made-up values of the shape a digest's templates see, for trying templates out
    before any article exists (the per-recipient `recipient` and the site are left out)."""
    now = datetime.now(UTC)
    return {
        "digest": DigestValues(name=name, topics=tuple(topics), max_articles=max_articles),
        "list": ListValues(slug="sample", name="Sample list", description=""),
        "articles": tuple(
            ArticleValues(
                url=f"https://news.example.com/sample-{n}",
                title=f"Sample article {n}: a headline of a usual length for a news story",
                summary=SAMPLE_SUMMARY,
                author="A. Reporter",
                image_url=f"https://news.example.com/sample-{n}.jpg",
                topics=tuple(topics[:1]),
                published_at=now - timedelta(hours=n),
            )
            for n in range(1, max_articles + 1)
        ),
    }
