"""/api/v1/bounces: the bounces, delays, policy refusals and complaints recorded, newest
first, so editors and operators see what receivers said about their mail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from mailer.api.deps import EditorDep
from mailer.bounces import history
from mailer.http.deps import SessionDep
from mailer.models import BounceEvent, BounceKind
from mailer.schemas import BounceEventPublic

router = APIRouter(prefix="/bounces", tags=["bounces"])


@router.get("", response_model=list[BounceEventPublic])
def list_bounces(
    session: SessionDep,
    _editor: EditorDep,
    kind: Annotated[
        BounceKind | None,
        Query(description="Only this kind (policy: refusals the operator must look into)"),
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Only events at or after this time (ISO 8601)")
    ] = None,
    subscriber_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Only this subscriber's events")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[BounceEventPublic]:
    """Recorded bounce events, newest first."""
    events = history.recent(
        session,
        kind=kind,
        since=_utc(since) if since is not None else None,
        subscriber_id=subscriber_id,
        limit=limit,
    )
    return [_public(event) for event in events]


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _public(event: BounceEvent) -> BounceEventPublic:
    assert event.id is not None
    return BounceEventPublic(
        id=event.id,
        at=_utc(event.at),
        kind=event.kind,
        status=event.status,
        action=event.action,
        source=event.source,
        outbox_id=event.outbox_id,
        subscriber_id=event.subscriber_id,
        detail=event.detail,
    )
