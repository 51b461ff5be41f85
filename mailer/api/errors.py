"""Domain errors as HTTP answers for the editors' API, and the database not answering as
a 503 on every route (`unavailable`)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError

from mailer.db import DatabaseBusy
from mailer.http import unavailable
from mailer.subscriptions.errors import (
    Conflict,
    Expired,
    InvalidInput,
    NotFound,
    SubscriptionError,
    UnknownForm,
    UnknownList,
)
from mailer.web.admin.errors import error_page, is_admin

STATUS = {
    InvalidInput: 422,
    UnknownList: 422,
    UnknownForm: 404,
    NotFound: 404,
    Conflict: 409,
    Expired: 410,
}


def _detail(exc: SubscriptionError) -> str:
    if isinstance(exc, UnknownList):
        return f"unknown list {exc}"
    if isinstance(exc, UnknownForm):
        return f"unknown form {exc}"
    if isinstance(exc, NotFound):
        return f"{exc} not found"
    return str(exc)


def install(app: FastAPI) -> None:
    @app.exception_handler(SubscriptionError)
    async def domain_error(request: Request, exc: SubscriptionError) -> Response:
        status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
        if is_admin(request):
            return error_page(request, status, _detail(exc))
        return JSONResponse({"detail": _detail(exc)}, status_code=status)

    async def database_error(request: Request, exc: Exception) -> Response:
        if not unavailable.is_outage(exc):
            raise exc  # a wrong query is a bug: the server error it always was
        return unavailable.answer(request, exc)

    for kind in (*unavailable.OUTAGES, DBAPIError, DatabaseBusy):
        app.add_exception_handler(kind, database_error)
