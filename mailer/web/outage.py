"""The page people see while the database is not answering: the editors' error page on
/admin/, the readers' message page elsewhere (`mailer.http.unavailable` answers the rest)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from mailer.http.unavailable import DETAIL
from mailer.web.admin.errors import error_page, is_admin
from mailer.web.pages import Pages


def outage_page(request: Request, headers: dict[str, str]) -> Response:
    """The 503 page for `request`, with `headers` (Retry-After, no caching)."""
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
