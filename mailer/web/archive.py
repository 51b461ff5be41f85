"""The public archive of a list's past digests, and its RSS feed (opt-in per list).

What readers see here has no reader's parts: each per-recipient marker is filled with a
neutral value (no name, no address, the unsubscribe link pointing at the archive), and a
digest's HTML, which editors wrote, is cleaned by mailer.web.sanitize before it is served
on this origin (where mailer.web.headers also forbids it any script).
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlmodel import Session, col, select

from mailer.db import session_scope
from mailer.delivery.render import fill
from mailer.http.deps import ServicesDep, row_ids_in_range
from mailer.http.responses import READERS
from mailer.models import MailingList, Send, SendStatus
from mailer.services import Services
from mailer.web import sanitize
from mailer.web.pages import pages_of

router = APIRouter(
    prefix="/archive",
    tags=["archive"],
    responses=READERS,
    dependencies=[Depends(row_ids_in_range)],
)
PUBLISHED = (SendStatus.sending, SendStatus.done, SendStatus.paused)
ARCHIVE_PAGE_SIZE = 100


def _archived_list(session: Session, slug: str) -> MailingList | None:
    mailing_list = session.exec(select(MailingList).where(col(MailingList.slug) == slug)).first()
    return mailing_list if mailing_list is not None and mailing_list.archive_enabled else None


def _issues(session: Session, mailing_list: MailingList) -> list[Send]:
    return list(
        session.exec(
            select(Send)
            .where(
                col(Send.list_id) == mailing_list.id,
                col(Send.status).in_(PUBLISHED),
                col(Send.digest_id).is_not(None),
            )
            .order_by(col(Send.created_at).desc())
            .limit(ARCHIVE_PAGE_SIZE)
        )
    )


def _public_copy(services: Services, mailing_list: MailingList, rendered: str) -> str:
    """A digest's subject, text or HTML with no reader's parts: no name (so the greeting
    is a plain "Hello,"), no address, and the unsubscribe link pointing at the archive."""
    return fill(
        rendered,
        {
            "unsubscribe_url": f"{services.settings.public_url}/archive/{mailing_list.slug}",
            "name": "",
            "email": "",
        },
    )


def _not_found(request: Request) -> Response:
    pages = pages_of(request)
    return pages.render(
        "message.html",
        status_code=404,
        title="No archive here",
        message="This newsletter has no public archive.",
    )


@router.get("/{slug}", response_class=HTMLResponse)
def archive_index(slug: str, request: Request, services: ServicesDep) -> Response:
    with session_scope(services.engine) as session:
        mailing_list = _archived_list(session, slug)
        if mailing_list is None:
            return _not_found(request)
        issues: list[dict[str, Any]] = [
            {
                "id": send.id,
                "subject": _public_copy(services, mailing_list, send.subject),
                "date": send.created_at,
            }
            for send in _issues(session, mailing_list)
        ]
        pages = pages_of(request)
        return pages.render("archive.html", list=mailing_list, issues=issues)


@router.get("/{slug}/feed.xml")
def archive_feed(slug: str, request: Request, services: ServicesDep) -> Response:
    """RSS 2.0 of the list's past digests."""
    with session_scope(services.engine) as session:
        mailing_list = _archived_list(session, slug)
        if mailing_list is None:
            return _not_found(request)
        base = f"{services.settings.public_url}/archive/{slug}"
        pages = pages_of(request)
        items = [
            {
                "title": _public_copy(services, mailing_list, send.subject),
                "link": f"{base}/{send.id}",
                "date": format_datetime(send.created_at),
                # Filled before it is cut, so that no marker is left in halves.
                "summary": _public_copy(services, mailing_list, send.text)[:500],
            }
            for send in _issues(session, mailing_list)
        ]
        xml = pages.render_text(
            "archive.xml",
            list=mailing_list,
            link=base,
            items=items,
            site_name=services.settings.mail.site_name,
        )
    return Response(xml, media_type="application/rss+xml; charset=utf-8")


@router.get("/{slug}/{send_id}", response_class=HTMLResponse)
def archive_issue(slug: str, send_id: int, request: Request, services: ServicesDep) -> Response:
    with session_scope(services.engine) as session:
        mailing_list = _archived_list(session, slug)
        send = session.get(Send, send_id)
        if (
            mailing_list is None
            or send is None
            or send.list_id != mailing_list.id
            or send.status not in PUBLISHED
            or send.digest_id is None
        ):
            return _not_found(request)
        pages = pages_of(request)
        return pages.render(
            "archive_issue.html",
            list=mailing_list,
            subject=_public_copy(services, mailing_list, send.subject),
            body=Markup(sanitize.clean(_public_copy(services, mailing_list, send.html))),  # noqa: S704 (cleaned by nh3)
        )
