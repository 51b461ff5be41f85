"""/api/v1/subscribers: search, consent history and its verification, export, erasure."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlmodel import Session

from mailer.api.deps import EditorDep
from mailer.errors import NotFound
from mailer.http.deps import MAX_ROW_ID, ServicesDep, SessionDep
from mailer.models import Subscriber
from mailer.presenters.subscribers import public
from mailer.schemas import (
    ChainVerification,
    Erased,
    SubscriberPublic,
)
from mailer.subscriptions import directory, erasure, ledger, transfer
from mailer.subscriptions.addresses import normalize_email
from mailer.subscriptions.export import SubscriberHeld, held_data

router = APIRouter(prefix="/subscribers", tags=["subscribers"])


def _get(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFound("subscriber")
    return subscriber


@router.get("", response_model=list[SubscriberPublic])
def search(
    session: SessionDep,
    _editor: EditorDep,
    email: Annotated[str | None, Query(max_length=320)] = None,
    list_slug: Annotated[str | None, Query(alias="list", max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(pending|confirmed|unsubscribed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> list[SubscriberPublic]:
    """Subscribers matching the normalized `email` (or a list and status), oldest first."""
    found = directory.search(
        session,
        email=normalize_email(email) if email is not None else None,
        list_slug=list_slug,
        status=status,
        limit=limit,
        offset=offset,
    )
    return [public(session, subscriber) for subscriber in found]


@router.get("/export.csv", response_class=StreamingResponse)
def export_csv(
    services: ServicesDep,
    _editor: EditorDep,
    list_slug: Annotated[str | None, Query(alias="list", max_length=64)] = None,
) -> StreamingResponse:
    """Every subscription as CSV (erased subscribers left out), streamed."""
    return StreamingResponse(
        transfer.export_csv_lines(services.engine, list_slug),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'},
    )


@router.get("/{subscriber_id}", response_model=SubscriberPublic)
def get_subscriber(subscriber_id: int, session: SessionDep, _editor: EditorDep) -> SubscriberPublic:
    return public(session, _get(session, subscriber_id))


@router.get("/{subscriber_id}/export", response_model=SubscriberHeld)
def export_subscriber(
    subscriber_id: int, session: SessionDep, _editor: EditorDep
) -> SubscriberHeld:
    """Everything held about the subscriber as one document: subscriptions, consent events
    and their verification, confirmations, messages and attempts, bounces, suppression."""
    return held_data(session, _get(session, subscriber_id))


@router.get("/{subscriber_id}/consent/verify", response_model=ChainVerification)
def verify_consent_chain(
    subscriber_id: int, session: SessionDep, _editor: EditorDep
) -> ChainVerification:
    """Recompute the hash chain of this subscriber's consent events."""
    report = ledger.verify(session, _get(session, subscriber_id))
    return ChainVerification(
        subscriber_id=subscriber_id,
        valid=report.valid,
        events=report.events,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
    )


@router.post("/{subscriber_id}/erase", response_model=Erased)
def erase_subscriber(
    subscriber_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> Erased:
    """Forget the address and personal fields; the consent chain stays verifiable."""
    _get(session, subscriber_id)
    erasure.erase(session, subscriber_id, services.clock.now(), reason="erased by an editor")
    return Erased(id=subscriber_id, erased=True)
