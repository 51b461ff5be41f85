"""Refusals on the editors' pages: a redirect to the sign-in form when the session is
missing, and a short page with the status and the reason otherwise."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from mailer.errors import MailerError, Unavailable
from mailer.web.admin.common import PAGE_HEADERS, SignInFirst, pages

TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Not possible now"}


def error_page(request: Request, status: int, message: str) -> Response:
    title = TITLES.get(status, "Please check the form" if status == 422 else "Something went wrong")
    return pages(request).render(
        "admin/error.html", status_code=status, headers=PAGE_HEADERS, title=title, message=message
    )


def admin_refusal(request: Request, exc: MailerError) -> Response:
    """The refusal as the editors' error page (the presenter of the admin surface)."""
    message = exc.detail
    if isinstance(exc, Unavailable):
        message = message[0].upper() + message[1:] + "."
    return error_page(request, exc.status, message)


def install(app: FastAPI) -> None:
    @app.exception_handler(SignInFirst)
    async def sign_in_first(_request: Request, _exc: SignInFirst) -> Response:
        return RedirectResponse("/admin/", status_code=303, headers=PAGE_HEADERS)
