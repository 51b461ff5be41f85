"""/api/v1/articles: a CMS pushes stories here; re-posting a URL updates it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from mailer.api.deps import EditorDep
from mailer.content import articles
from mailer.http.deps import MAX_ROW_ID, ServicesDep, SessionDep
from mailer.models import Article
from mailer.schemas import ArticleIn, ArticlePublic

router = APIRouter(prefix="/articles", tags=["articles"])


def public(article: Article) -> ArticlePublic:
    return ArticlePublic.model_validate(article, from_attributes=True)


@router.post(
    "",
    status_code=201,
    response_model=ArticlePublic,
    responses={200: {"description": "an article with this URL existed and was updated"}},
)
def upsert_article(
    body: ArticleIn,
    response: Response,
    session: SessionDep,
    services: ServicesDep,
    _editor: EditorDep,
) -> ArticlePublic:
    """Create an article (201), or update the one with this URL (200)."""
    article, created = articles.upsert(
        session, articles.ArticleInput(**body.model_dump()), services.clock.now()
    )
    if not created:
        response.status_code = 200
    return public(article)


@router.get("", response_model=list[ArticlePublic])
def list_articles(
    session: SessionDep,
    _editor: EditorDep,
    topic: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> list[ArticlePublic]:
    """Newest first, optionally by topic or words in the title."""
    return [public(a) for a in articles.search(session, topic, q, limit, offset)]


@router.get("/{article_id}", response_model=ArticlePublic)
def get_article(article_id: int, session: SessionDep, _editor: EditorDep) -> ArticlePublic:
    return public(articles.get(session, article_id))


@router.delete("/{article_id}", status_code=204)
def delete_article(article_id: int, session: SessionDep, _editor: EditorDep) -> Response:
    """Delete an article no digest has carried (409 otherwise)."""
    articles.delete(session, article_id)
    return Response(status_code=204)
