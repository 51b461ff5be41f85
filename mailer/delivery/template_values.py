"""What mail templates see of lists, digests and articles: frozen copies of the fields a
template may show, never database rows (a row carries its session, SQLAlchemy's
machinery and methods that write, such as `sqlmodel_update`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
