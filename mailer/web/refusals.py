"""Refusals as readers see them, in their language: JSON for scripts (embed.js shows
`detail`), a comment for a script that could not be served, else a short page; and the
pages for a link that is not valid or has expired."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from mailer.errors import MailerError, Unavailable
from mailer.http.refusals import speaks_json
from mailer.web.pages import Pages, pages_of


def for_reader(exc: MailerError, pages: Pages) -> str:
    """The refusal's message in the readers' language (its general sentence when the
    catalogue cannot translate the exact one, a library's own words)."""
    if not pages.knows(exc.template) and exc.general:
        return pages.gettext(exc.general)
    return pages.gettext(exc.template, **exc.params)


def reader_refusal(request: Request, exc: MailerError, back_url: str = "") -> Response:
    """The refusal for a reader's request (the presenter of the readers' surface)."""
    pages = pages_of(request)
    if speaks_json(request):
        body: dict[str, Any] = {"detail": for_reader(exc, pages)}
        if exc.field:
            body["field"] = exc.field
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)
    if request.url.path.endswith(".js"):
        return PlainTextResponse(
            f"// {exc.message}\n",
            status_code=exc.status,
            headers=exc.headers,
            media_type="application/javascript",
        )
    if isinstance(exc, Unavailable):
        title = pages.gettext("Please try again in a moment")
        message = pages.gettext("We cannot reach our database just now. Please try again shortly.")
    else:
        title = pages.gettext("We could not sign you up")
        message = for_reader(exc, pages)
    return pages.render(
        "message.html",
        status_code=exc.status,
        headers=exc.headers,
        title=title,
        message=message,
        back_url=back_url,
    )


def bad_link(pages: Pages) -> Response:
    return pages.render(
        "message.html",
        status_code=404,
        title=pages.gettext("This link is not valid"),
        message=pages.gettext("Please check that you copied the whole link from the email."),
    )


def expired_link(pages: Pages) -> Response:
    return pages.render(
        "message.html",
        status_code=410,
        title=pages.gettext("This link has expired"),
        message=pages.gettext("Please sign up again; we will send you a new link."),
    )
