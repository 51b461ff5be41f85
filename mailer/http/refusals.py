"""Refusals answered the way the surface that owns the request speaks.

Every `MailerError` that leaves a route, every `HTTPException` and validation error, the
database not answering, and refusals made before routing (a body too large) end here.
Each surface registers one `Presenter` under its name (`install`); the route that serves
the request, or would serve it when the refusal comes before routing, names its surface
by the package its endpoint is defined in (registered with `install`).
A refusal before routing, or for a path no route serves, is answered as its client
asks (`_asked`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from mailer.errors import Invalid, MailerError
from mailer.http import outage

Presenter = Callable[[Request, MailerError], Response]

API = "api"
ADMIN_PAGES = "admin-pages"
READERS = "readers"


class Refusal(MailerError):
    """An `HTTPException` or a validation error, carried to a presenter as a refusal."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message, headers=headers)
        self.status = status


def surface_of(request: Request) -> str | None:
    """The surface that owns the route serving `request`: the one registered for the
    package its endpoint is defined in (the longest match); None before routing, or when
    no route serves it."""
    route = request.scope.get("route")
    if route is None:
        return None
    module = getattr(getattr(route, "endpoint", None), "__module__", "") or ""
    owners: dict[str, str] = request.app.state.surface_owners
    for package in sorted(owners, key=len, reverse=True):
        if module == package or module.startswith(package + "."):
            return owners[package]
    return API


def is_json(content_type: str) -> bool:
    """application/json or application/<anything>+json, as FastAPI decides to parse JSON."""
    media_type = content_type.split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def speaks_json(request: Request) -> bool:
    """Whether the client reads JSON: it sent JSON, or asks for JSON and not for HTML."""
    accept = request.headers.get("accept", "")
    return is_json(request.headers.get("content-type", "")) or (
        "application/json" in accept and "text/html" not in accept
    )


def prefers_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _asked(request: Request) -> str:
    """The surface a request that no route has claimed is answered by: JSON for a client
    that sent or asks for JSON, the editors' pages for an editor's browser (its session
    cookie), the readers' pages for any other browser, else JSON."""
    if speaks_json(request):
        return API
    if request.app.state.editor_cookie in request.cookies:
        return ADMIN_PAGES
    return READERS if prefers_html(request) else API


def present(request: Request, exc: MailerError, surface: str | None = None) -> Response:
    """`exc` as the owning surface answers it (`surface`, when the caller knows it)."""
    presenters: dict[str, Presenter] = request.app.state.presenters
    response = presenters[surface or surface_of(request) or _asked(request)](request, exc)
    response.headers.update(exc.headers)
    return response


def _validation_message(exc: RequestValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
        for error in exc.errors()
    )


def install(
    app: FastAPI,
    presenters: Mapping[str, Presenter],
    owners: Mapping[str, str],
    editor_cookie: str,
) -> None:
    """Answer every refusal through `presenters` (one per surface: API, ADMIN_PAGES,
    READERS); `owners` names the surface of the routes each package defines (a route of
    no package named there is the API's). The editors' API keeps FastAPI's own shapes for
    HTTP and validation errors. `editor_cookie` is the editors' session cookie."""
    app.state.presenters = dict(presenters)
    app.state.editor_cookie = editor_cookie
    app.state.surface_owners = dict(owners)

    @app.exception_handler(MailerError)
    async def refused(request: Request, exc: MailerError) -> Response:
        return present(request, exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        surface = surface_of(request) or _asked(request)
        if exc.status_code >= 400 and surface != API:
            return present(request, Refusal(exc.status_code, str(exc.detail), exc.headers))
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if surface_of(request) == ADMIN_PAGES:
            return present(request, Invalid("", _validation_message(exc)))
        return await request_validation_exception_handler(request, exc)

    async def database_error(request: Request, exc: Exception) -> Response:
        if not outage.is_outage(exc):
            raise exc  # a wrong query is a bug: the server error it always was
        return present(request, outage.refusal(request, exc))

    for kind in (*outage.OUTAGES, DBAPIError):
        app.add_exception_handler(kind, database_error)
