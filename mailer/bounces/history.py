"""The bounce events recorded, newest first: for the editors' API and the admin pages."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from mailer.models import BounceEvent, BounceKind


def recent(
    session: Session,
    *,
    kind: BounceKind | None = None,
    since: datetime | None = None,
    subscriber_id: int | None = None,
    limit: int = 100,
) -> list[BounceEvent]:
    """Events newest first, narrowed by kind, time (UTC) and subscriber."""
    statement = select(BounceEvent)
    if kind is not None:
        statement = statement.where(col(BounceEvent.kind) == kind.value)
    if since is not None:
        statement = statement.where(col(BounceEvent.at) >= since)
    if subscriber_id is not None:
        statement = statement.where(col(BounceEvent.subscriber_id) == subscriber_id)
    statement = statement.order_by(col(BounceEvent.at).desc(), col(BounceEvent.id).desc())
    return list(session.exec(statement.limit(limit)))
