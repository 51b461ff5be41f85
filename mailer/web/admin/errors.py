"""Errors on /admin/ pages answered as pages, not JSON: a redirect to the sign-in form
when the session is missing, and a short page with the status otherwise."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from mailer.web.admin.common import PAGE_HEADERS, SignInFirst, pages

TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Not possible now"}


def is_admin(request: Request) -> bool:
    return request.url.path.startswith("/admin/")


def error_page(request: Request, status: int, message: str) -> Response:
    title = TITLES.get(status, "Please check the form" if status == 422 else "Something went wrong")
    return pages(request).render(
        "admin/error.html", status_code=status, headers=PAGE_HEADERS, title=title, message=message
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(SignInFirst)
    async def sign_in_first(_request: Request, _exc: SignInFirst) -> Response:
        return RedirectResponse("/admin/", status_code=303, headers=PAGE_HEADERS)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if is_admin(request) and exc.status_code >= 400:
            return error_page(request, exc.status_code, str(exc.detail))
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if is_admin(request):
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
                for error in exc.errors()
            )
            return error_page(request, 422, problems)
        return await request_validation_exception_handler(request, exc)
