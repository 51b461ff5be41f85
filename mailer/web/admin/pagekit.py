"""Small things the Subscribers and Articles pages share: UTC times in <time> elements,
and a sign-in check that holds no database session, for answers that stream or that
call domain functions opening sessions of their own (SQLite runs one at a time)."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from markupsafe import Markup

from mailer import accounts
from mailer.api.deps import CSRF_HEADER, SESSION_COOKIE, ServicesDep
from mailer.db import session_scope
from mailer.web.admin.common import SignInFirst


def as_utc(at: datetime) -> datetime:
    """The same moment in UTC (SQLite hands back naive datetimes, which are UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def time_tag(at: datetime | None, seconds: bool = False) -> Markup:
    """`<time datetime="2026-11-26T07:00:00Z">2026-11-26 07:00 UTC</time>`, or a dash."""
    if at is None:
        return Markup("—")
    moment = as_utc(at)
    shown = moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")
    machine = moment.isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}">{}</time>').format(machine, shown)


def require_signed_in_briefly(request: Request, services: ServicesDep) -> accounts.SignedIn:
    """Like `common.SignedInDep`, but the session it reads with is closed at once."""
    with session_scope(services.engine) as session:
        current = accounts.signed_in(
            session, request.cookies.get(SESSION_COOKIE, ""), services.clock.now()
        )
    if current is None:
        raise SignInFirst()
    return current


BrieflySignedInDep = Annotated[accounts.SignedIn, Depends(require_signed_in_briefly)]


async def require_csrf_briefly(request: Request, current: BrieflySignedInDep) -> accounts.SignedIn:
    """Like `common.PostedDep` (the session's CSRF token in the form or the header)."""
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        value = (await request.form()).get("csrf", "")
        sent = value if isinstance(value, str) else ""
    if not hmac.compare_digest(sent.encode(), current.session.csrf_token.encode()):
        raise HTTPException(403, "the form had expired: reload the page and try again")
    return current


BrieflyPostedDep = Annotated[accounts.SignedIn, Depends(require_csrf_briefly)]
