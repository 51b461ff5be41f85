"""The database not answering, as an honest 503 with Retry-After on every route: a page
for people, JSON for scripts and the editors' API. Nothing is reported as done (a signup
whose transaction failed never gets its 202). The page is the web's
(`mailer.web.outage`), which the app factory hands over as `app.state.outage_page`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mailer.db import DatabaseBusy

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30
OUTAGES: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout, DatabaseBusy)
"""Cannot connect, connection lost, database missing or unreadable, locked past the busy
timeout, no pooled connection free in time."""
DETAIL = "the database is not available just now; please try again shortly"

OutagePage = Callable[[Request, dict[str, str]], Response]
"""The 503 page for a person on `request`, with these headers."""


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
    outage_page: OutagePage = request.app.state.outage_page
    return outage_page(request, headers)
