"""/admin/articles: articles (list, filter by topic, edit, delete) and feeds with their
last poll.

Edits go through the same checks and domain functions as /api/v1/articles and
/api/v1/feeds: the schemas' limits, then `content.articles` and `content.feeds`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session

from mailer.accounts import SignedIn
from mailer.content import articles, feeds
from mailer.errors import Conflict, Invalid
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import Article
from mailer.schemas import ArticleIn, FeedCreate
from mailer.web.admin.common import PostedDep, SignedInDep, redirect, render
from mailer.web.admin.times import as_utc, time_tag

router = APIRouter(prefix="/admin/articles")

PAGE_SIZE = 50
FIELD_LABELS = {
    "url": "URL",
    "title": "Title",
    "summary": "Summary",
    "author": "Author",
    "image_url": "Image URL",
    "topics": "Topics",
    "published_at": "Published",
    "name": "Name",
    "interval_minutes": "Poll every (minutes)",
    "default_topics": "Topics",
}
TEXT_LIMIT = 20_000
"""Form fields longer than any schema allows are refused by the schema's own message."""


def _problems(exc: ValidationError | Invalid) -> str:
    """A schema's or the domain's complaints, one sentence per field, named as the form
    names them."""
    if isinstance(exc, Invalid):
        return f"{FIELD_LABELS.get(exc.field, exc.field)}: {exc.message}."
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        empty = error["type"] == "string_too_short" and error.get("ctx", {}).get("min_length") == 1
        message = "is required" if empty else error["msg"]
        parts.append(f"{FIELD_LABELS.get(field, field)}: {message}.")
    return " ".join(parts)


def _topics(typed: str) -> list[str]:
    return [part.strip() for part in typed.split(",") if part.strip()]


# ---- the list ---------------------------------------------------------------------------


@router.get("")
def articles_page(
    request: Request,
    current: SignedInDep,
    session: SessionDep,
    topic: Annotated[str, Query(max_length=64)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """Newest published first, by topic or words in the title; PAGE_SIZE a page."""
    found = articles.search(
        session, topic or None, q or None, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE
    )
    return render(
        request,
        current,
        "admin/articles.html",
        section="articles",
        time_tag=time_tag,
        articles=found[:PAGE_SIZE],
        more=len(found) > PAGE_SIZE,
        topics=articles.recent_topics(session),
        topic=topic,
        q=q,
        page=page,
    )


# ---- feeds (before /{article_id}, which would take "feeds" for an id) ----------------


def _feeds_page(
    request: Request,
    current: SignedIn,
    session: Session,
    error: str = "",
    typed: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        current,
        "admin/feeds.html",
        section="articles",
        status_code=status_code,
        time_tag=time_tag,
        feeds=feeds.all_feeds(session),
        error=error,
        typed=typed or {"url": "", "name": "", "topics": "", "interval_minutes": "15"},
    )


@router.get("/feeds")
def feeds_page(request: Request, current: SignedInDep, session: SessionDep) -> Response:
    """Every feed with its topics and its last poll: when, and what came of it."""
    return _feeds_page(request, current, session)


@router.post("/feeds")
def add_feed(
    request: Request,
    current: PostedDep,
    session: SessionDep,
    services: ServicesDep,
    url: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    name: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    topics: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    interval_minutes: Annotated[str, Form(max_length=20)] = "15",
) -> Response:
    """Add a feed as POST /api/v1/feeds does; it is polled soon after."""
    typed = {"url": url, "name": name, "topics": topics, "interval_minutes": interval_minutes}
    try:
        body = FeedCreate(
            url=url.strip(),
            name=name.strip(),
            default_topics=_topics(topics),
            interval_minutes=interval_minutes.strip() or "15",  # type: ignore[arg-type]
        )
        feeds.create(session, body.model_dump(), services.outbound, services.clock.now())
    except (ValidationError, Invalid) as exc:
        return _feeds_page(request, current, session, _problems(exc), typed, 422)
    except Conflict:
        session.rollback()
        return _feeds_page(
            request, current, session, "A feed with this URL exists already.", typed, 409
        )
    session.commit()  # before the browser follows the redirect
    return redirect("/admin/articles/feeds", "created")


@router.post("/feeds/{feed_id}/poll")
async def poll_feed(feed_id: int, services: ServicesDep, _current: PostedDep) -> Response:
    """Poll now, as POST /api/v1/feeds/{id}/poll does; the page then shows the result."""
    await run_in_threadpool(
        feeds.poll_now, services.engine, services.outbound, feed_id, services.clock.now()
    )
    return redirect("/admin/articles/feeds", "polled")


@router.post("/feeds/{feed_id}/delete")
def remove_feed(feed_id: int, _current: PostedDep, session: SessionDep) -> Response:
    """Stop polling a feed; the articles it brought stay."""
    feeds.delete(session, feed_id)
    session.commit()
    return redirect("/admin/articles/feeds", "deleted")


# ---- one article -------------------------------------------------------------------------


def _as_form(article: Article) -> dict[str, str]:
    return {
        "title": article.title,
        "summary": article.summary,
        "author": article.author,
        "image_url": article.image_url,
        "topics": ", ".join(article.topics),
        "published_at": as_utc(article.published_at).strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _article_page(
    request: Request,
    current: SignedIn,
    session: Session,
    article: Article,
    typed: dict[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    assert article.id is not None
    return render(
        request,
        current,
        "admin/article.html",
        section="articles",
        status_code=status_code,
        time_tag=time_tag,
        article=article,
        typed=typed or _as_form(article),
        error=error,
        carried=articles.carried(session, article.id),
    )


@router.get("/{article_id}")
def article_page(
    article_id: int, request: Request, current: SignedInDep, session: SessionDep
) -> Response:
    """The article's fields in a form, and whether it may be deleted."""
    return _article_page(request, current, session, articles.get(session, article_id))


def _published_at(typed: str) -> datetime:
    """A datetime-local value, read as UTC."""
    try:
        return as_utc(datetime.fromisoformat(typed.strip()))
    except ValueError as exc:
        raise Invalid("published_at", "must be a date and time") from exc


@router.post("/{article_id}")
def save_article(
    article_id: int,
    request: Request,
    current: PostedDep,
    session: SessionDep,
    services: ServicesDep,
    title: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    summary: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    author: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    image_url: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    topics: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    published_at: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Save the edit as POST /api/v1/articles would (same URL: an update); on a problem,
    the form again with the message, and nothing written."""
    article = articles.get(session, article_id)
    typed = {
        "title": title,
        "summary": summary,
        "author": author,
        "image_url": image_url,
        "topics": topics,
        "published_at": published_at,
    }
    try:
        body = ArticleIn(
            url=article.url,
            title=title.strip(),
            summary=summary.strip(),
            author=author.strip(),
            image_url=image_url.strip(),
            topics=_topics(topics),
            published_at=_published_at(published_at),
        )
        articles.upsert(session, articles.ArticleInput(**body.model_dump()), services.clock.now())
    except (ValidationError, Invalid) as exc:
        session.rollback()
        return _article_page(request, current, session, article, typed, _problems(exc), 422)
    session.commit()
    return redirect(f"/admin/articles/{article_id}", "saved")


@router.get("/{article_id}/delete")
def delete_page(
    article_id: int, request: Request, current: SignedInDep, session: SessionDep
) -> Response:
    """Asks before deleting, or says why this article cannot be deleted."""
    article = articles.get(session, article_id)
    return render(
        request,
        current,
        "admin/article_delete.html",
        section="articles",
        time_tag=time_tag,
        article=article,
        carried=articles.carried(session, article_id),
        error="",
    )


@router.post("/{article_id}/delete")
def delete_article(
    article_id: int, request: Request, current: PostedDep, session: SessionDep
) -> Response:
    """Delete as DELETE /api/v1/articles/{id} does: not once a digest has carried it."""
    try:
        articles.delete(session, article_id)
    except Conflict:
        article = articles.get(session, article_id)
        return render(
            request,
            current,
            "admin/article_delete.html",
            section="articles",
            status_code=409,
            time_tag=time_tag,
            article=article,
            carried=True,
            error="This article went out in a digest, so it is kept for the digest's archive "
            "and cannot be deleted.",
        )
    session.commit()
    return redirect("/admin/articles", "deleted")
