"""/admin/subscribers: Subscribers: search, status per list, consent timeline, export, erase.

An address never travels in a URL: searching by address is a form post, and pages name
a subscriber by id. The data comes from the same functions as /api/v1/subscribers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlmodel import Session

from mailer.accounts import SignedIn
from mailer.bounces import history
from mailer.errors import Invalid, NotFound
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import Subscriber, SubscriptionStatus
from mailer.presenters.subscribers import public
from mailer.schemas import ChainVerification
from mailer.subscriptions import catalog, directory, erasure, ledger, transfer
from mailer.subscriptions.addresses import normalize_email
from mailer.subscriptions.export import held_data
from mailer.web.admin.common import PAGE_HEADERS, PostedDep, SignedInDep, redirect, render
from mailer.web.admin.times import time_tag

router = APIRouter(prefix="/admin/subscribers")

PAGE_SIZE = 50
STATUSES = [status.value for status in SubscriptionStatus]
NO_MATCH = "No subscriber with that address."


def _subscriber(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFound("subscriber")
    return subscriber


def _list_page(
    request: Request,
    current: SignedIn,
    session: Session,
    found: list[Subscriber],
    *,
    list_slug: str = "",
    status: str = "",
    page: int = 1,
    more: bool = False,
    searched: str = "",
    search_error: str = "",
    status_code: int = 200,
) -> Response:
    ids = [subscriber.id for subscriber in found if subscriber.id is not None]
    return render(
        request,
        current,
        "admin/subscribers.html",
        section="subscribers",
        time_tag=time_tag,
        status_code=status_code,
        subscribers=found,
        statuses_by_id=directory.statuses_of(session, ids),
        lists=catalog.all_lists(session),
        statuses=STATUSES,
        list_slug=list_slug,
        status=status,
        page=page,
        more=more,
        searched=searched,
        search_error=search_error,
    )


@router.get("")
def subscribers_page(
    request: Request,
    current: SignedInDep,
    session: SessionDep,
    list_slug: Annotated[str, Query(alias="list", max_length=64)] = "",
    status: Annotated[str, Query(pattern="^(|pending|confirmed|unsubscribed)$")] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """Subscribers, newest first, by list and status; PAGE_SIZE a page."""
    found = directory.search(
        session,
        list_slug=list_slug or None,
        status=status or None,
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
        newest_first=True,
    )
    return _list_page(
        request,
        current,
        session,
        found[:PAGE_SIZE],
        list_slug=list_slug,
        status=status,
        page=page,
        more=len(found) > PAGE_SIZE,
    )


@router.post("/search")
def search_by_address(
    request: Request,
    current: PostedDep,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """An exact (normalized) address opens its page; a part of one lists the matches."""
    typed = email.strip()
    if not typed:
        return _list_page(
            request,
            current,
            session,
            [],
            search_error="Type an address, or a part of one.",
            status_code=422,
        )
    try:
        exact = directory.search(session, email=normalize_email(typed), limit=1)
    except Invalid:
        exact = []  # not a whole address: look for it as a part of one
    if exact:
        return redirect(f"/admin/subscribers/{exact[0].id}")
    matches = directory.containing(session, typed, limit=PAGE_SIZE)
    if len(matches) == 1:
        return redirect(f"/admin/subscribers/{matches[0].id}")
    return _list_page(
        request,
        current,
        session,
        matches,
        searched=typed,
        search_error="" if matches else NO_MATCH,
    )


@router.get("/export.csv")
def export_csv(
    services: ServicesDep,
    _current: SignedInDep,
    list_slug: Annotated[str, Query(alias="list", max_length=64)] = "",
) -> StreamingResponse:
    """The same CSV as GET /api/v1/subscribers/export.csv (erased subscribers left out)."""
    name = f"subscribers-{list_slug}.csv" if list_slug else "subscribers.csv"
    return StreamingResponse(
        transfer.export_csv_lines(services.engine, list_slug or None),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', **PAGE_HEADERS},
    )


def _verification(session: Session, subscriber: Subscriber) -> ChainVerification:
    assert subscriber.id is not None
    report = ledger.verify(session, subscriber)
    return ChainVerification(
        subscriber_id=subscriber.id,
        valid=report.valid,
        events=report.events,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
    )


@router.get("/{subscriber_id}")
def subscriber_page(
    subscriber_id: int, request: Request, current: SignedInDep, session: SessionDep
) -> Response:
    """Address, lists, suppression, the latest bounces and complaints, and the consent
    history oldest first, verified."""
    subscriber = _subscriber(session, subscriber_id)
    return render(
        request,
        current,
        "admin/subscriber.html",
        section="subscribers",
        time_tag=time_tag,
        subscriber=public(session, subscriber),
        erased_at=subscriber.erased_at,
        topics=directory.topics_by_list(session, subscriber_id),
        chain=_verification(session, subscriber),
        bounces=history.recent(session, subscriber_id=subscriber_id, limit=50),
    )


@router.get("/{subscriber_id}/export.json")
def export_subscriber(subscriber_id: int, _current: SignedInDep, session: SessionDep) -> Response:
    """Everything held about one subscriber, consent chain included, as a JSON download."""
    held = held_data(session, _subscriber(session, subscriber_id)).model_dump(mode="json")
    return JSONResponse(
        held,
        headers={
            "Content-Disposition": f'attachment; filename="subscriber-{subscriber_id}.json"',
            **PAGE_HEADERS,
        },
    )


def _erase_page(
    request: Request,
    current: SignedIn,
    session: Session,
    subscriber: Subscriber,
    error: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        current,
        "admin/subscriber_erase.html",
        section="subscribers",
        time_tag=time_tag,
        status_code=status_code,
        subscriber=public(session, subscriber),
        error=error,
    )


@router.get("/{subscriber_id}/erase")
def erase_page(
    subscriber_id: int, request: Request, current: SignedInDep, session: SessionDep
) -> Response:
    """What erasure does, and a box to tick before it is done."""
    return _erase_page(request, current, session, _subscriber(session, subscriber_id))


@router.post("/{subscriber_id}/erase")
def erase_subscriber(
    subscriber_id: int,
    request: Request,
    current: PostedDep,
    session: SessionDep,
    services: ServicesDep,
    understood: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Erase as POST /api/v1/subscribers/{id}/erase does, once the box is ticked."""
    subscriber = _subscriber(session, subscriber_id)
    if understood != "yes":
        return _erase_page(
            request,
            current,
            session,
            subscriber,
            error="Tick “I understand this cannot be undone” to erase this subscriber.",
            status_code=422,
        )
    erasure.erase(session, subscriber_id, services.clock.now(), reason="erased by an editor")
    session.commit()  # before the browser follows the redirect
    return redirect(f"/admin/subscribers/{subscriber_id}", "erased")
