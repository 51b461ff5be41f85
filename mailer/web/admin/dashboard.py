"""/admin/dashboard: subscribers per list over time, signups and unsubscribes per day,
the last and next sends, and today's totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlmodel import Session, col, select

from mailer.delivery import sends
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import Digest, MailingList, Send
from mailer.subscriptions import stats
from mailer.web.admin import charts
from mailer.web.admin.common import SignedInDep, render
from mailer.web.admin.times import in_zone

router = APIRouter(prefix="/admin/dashboard")

LAST_SENDS = 5
NEXT_SENDS = 5


@dataclass(frozen=True)
class LastSend:
    send_id: int
    digest_name: str
    subject: str
    status: str
    sent: int
    total: int
    created_at: datetime


@dataclass(frozen=True)
class NextSend:
    digest_id: int
    digest_name: str
    list_name: str
    at_local: datetime
    timezone: str


def last_sends(session: Session) -> list[LastSend]:
    """The most recent sends with their progress (as GET /api/v1/sends/{id} reports it)."""
    rows = session.exec(
        select(Send.id, Digest.name)
        .outerjoin(Digest, col(Digest.id) == Send.digest_id)
        .order_by(col(Send.created_at).desc(), col(Send.id).desc())
        .limit(LAST_SENDS)
    )
    found = []
    for send_id, digest_name in list(rows):
        assert send_id is not None
        send, progress = sends.progress(session, send_id)
        found.append(
            LastSend(
                send_id,
                digest_name or "(deleted digest)",
                send.subject,
                progress.status,
                progress.sent,
                progress.total,
                send.created_at,
            )
        )
    return found


def next_sends(session: Session) -> list[NextSend]:
    """Enabled digests by when they are next due, in their own time zone."""
    rows = session.exec(
        select(Digest, MailingList.name)
        .join(MailingList, col(MailingList.id) == Digest.list_id)
        .where(col(Digest.enabled), col(Digest.next_run_at).is_not(None))
        .order_by(col(Digest.next_run_at), col(Digest.id))
        .limit(NEXT_SENDS)
    )
    found = []
    for digest, list_name in rows:
        assert digest.next_run_at is not None and digest.id is not None
        at_local, timezone = in_zone(digest.next_run_at, digest.timezone)
        found.append(NextSend(digest.id, digest.name, list_name, at_local, timezone))
    return found


@router.get("")
def dashboard(
    request: Request, current: SignedInDep, services: ServicesDep, session: SessionDep
) -> Response:
    now = services.clock.now()
    days = stats.period(now)
    per_list = stats.confirmed_per_day(session, now)
    activity = stats.activity_per_day(session, now)
    subscribers_chart = charts.line_chart(days, [(item.name, item.counts) for item in per_list])
    activity_chart = charts.bar_chart(
        days,
        [
            ("Signups", [day.signups for day in activity]),
            ("Unsubscribes", [day.unsubscribes for day in activity]),
        ],
    )
    return render(
        request,
        current,
        "admin/dashboard.html",
        section="dashboard",
        days=days,
        per_list=per_list,
        activity=activity,
        subscribers_chart=subscribers_chart,
        activity_chart=activity_chart,
        totals=stats.totals(session),
        bounces=stats.bounces_by_kind(session, now),
        last_sends=last_sends(session),
        next_sends=next_sends(session),
    )
