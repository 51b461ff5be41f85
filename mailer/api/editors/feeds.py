"""/api/v1/feeds: RSS and Atom feeds polled for articles, and their last poll result."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from mailer.api.deps import EditorDep
from mailer.content import feeds
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import Feed
from mailer.schemas import FeedCreate, FeedPublic, PollOutcome

router = APIRouter(prefix="/feeds", tags=["feeds"])


def public(feed: Feed) -> FeedPublic:
    return FeedPublic.model_validate(feed, from_attributes=True)


@router.post("", status_code=201, response_model=FeedPublic)
def create_feed(
    body: FeedCreate, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> FeedPublic:
    """Add a feed; it is polled at once and then every `interval_minutes`."""
    return public(feeds.create(session, body.model_dump(), services.outbound, services.clock.now()))


@router.get("", response_model=list[FeedPublic])
def list_feeds(session: SessionDep, _editor: EditorDep) -> list[FeedPublic]:
    return [public(feed) for feed in feeds.all_feeds(session)]


@router.post("/{feed_id}/poll", response_model=PollOutcome)
async def poll_now(feed_id: int, services: ServicesDep, _editor: EditorDep) -> PollOutcome:
    """Poll the feed now and say what came of it."""

    result = await run_in_threadpool(
        feeds.poll_now, services.engine, services.outbound, feed_id, services.clock.now()
    )
    return PollOutcome(
        status=result.status, new=result.new, updated=result.updated, error=result.error
    )


@router.delete("/{feed_id}", status_code=204)
def delete_feed(feed_id: int, session: SessionDep, _editor: EditorDep) -> Response:
    """Stop polling a feed; its articles stay."""
    feeds.delete(session, feed_id)
    return Response(status_code=204)
