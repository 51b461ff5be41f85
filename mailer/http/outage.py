"""The database not answering, as an honest 503 with Retry-After on every route, in the
form the surface speaks (`refusals.present`). Nothing is reported as done: a signup whose
transaction failed never gets its 202."""

from __future__ import annotations

import logging

from fastapi import Request
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mailer.db import DatabaseBusy
from mailer.errors import Unavailable

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


def refusal(request: Request, exc: BaseException) -> Unavailable:
    """The 503 that answers `request`, logged with the driver's reason."""
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, _summary(exc)
    )
    return Unavailable(
        DETAIL, headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    )
