"""The database not answering, as an honest 503 with Retry-After on every route: a page
for people, JSON for scripts and the editors' API. Nothing is reported as done (a signup
whose transaction failed never gets its 202)."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mailer.db import DatabaseBusy
from mailer.web.admin.errors import error_page, is_admin
from mailer.web.pages import Pages

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30
OUTAGES: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout, DatabaseBusy)
"""Cannot connect, connection lost, database missing or unreadable, locked past the busy
timeout, no pooled connection free in time."""
DETAIL = "the database is not available just now; please try again shortly"


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be used just now (not that a query is wrong)."""
    if isinstance(exc, OUTAGES):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _summary(exc: BaseException) -> str:
    """The driver's first line, without the statement or its parameters (which can hold
    readers' addresses)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


def _wants_json(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/webhooks/")):
        return True
    content_type = request.headers.get("content-type", "")
    accept = request.headers.get("accept", "")
    return "json" in content_type or ("application/json" in accept and "text/html" not in accept)


def answer(request: Request, exc: BaseException) -> Response:
    """The 503 for `request`, in the form its client reads."""
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, _summary(exc)
    )
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    if _wants_json(request):
        return JSONResponse({"detail": DETAIL}, status_code=503, headers=headers)
    if request.url.path.endswith(".js"):
        return PlainTextResponse(
            f"// {DETAIL}\n", status_code=503, headers=headers, media_type="application/javascript"
        )
    if is_admin(request):
        page = error_page(request, 503, DETAIL[0].upper() + DETAIL[1:] + ".")
        page.headers.update(headers)
        return page
    pages: Pages = request.app.state.pages
    return pages.render(
        "message.html",
        status_code=503,
        headers=headers,
        title=pages.gettext("Please try again in a moment"),
        message=pages.gettext("We cannot reach our database just now. Please try again shortly."),
    )
