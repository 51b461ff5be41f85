"""What every page of /admin/ shares: who is signed in (or a redirect to the sign-in
page), the CSRF check on every form post, rendering inside the editors' layout, and
redirect-after-post with a notice.

Pages call the same domain functions as the editors' API; scripts on the pages call the
API itself with the session cookie and the `X-CSRF-Token` header (see `api/deps.py`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from mailer import accounts
from mailer.http.deps import CSRF_HEADER, ServicesDep, signed_in_browser
from mailer.models import UserRole
from mailer.web.pages import pages_of as pages

PAGE_HEADERS = {"Cache-Control": "no-store"}

# Notices shown after a redirect, by key: no reader data ever travels in a URL.
NOTICES = {
    "saved": "Saved.",
    "deleted": "Deleted.",
    "created": "Created.",
    "erased": "The subscriber was erased. The consent history is kept, without the address.",
    "sent": "Sent.",
    "started": "The send has started.",
    "skipped": "Nothing was sent: the reason is below.",
    "paused": "The send is paused.",
    "resumed": "The send is resumed.",
    "cancelled": "The send is cancelled.",
    "revoked": "Revoked.",
    "disabled": "The account is disabled and signed out everywhere.",
    "polled": "The feed was polled: the result is in its row below.",
    "test-queued": "A test event (ping) is queued: it shows below once it has been tried.",
    "retried": "The delivery is queued again and will be tried shortly.",
}


class SignInFirst(Exception):
    """Raised by `require_signed_in`; answered with a redirect to the sign-in page."""


def require_signed_in(request: Request, services: ServicesDep) -> accounts.SignedIn:
    current = signed_in_browser(request, services)
    if current is None:
        raise SignInFirst()
    return current


SignedInDep = Annotated[accounts.SignedIn, Depends(require_signed_in)]


def require_admin(current: SignedInDep) -> accounts.SignedIn:
    """Administrators only (users and API keys); editors get a 403."""
    if current.user.role != UserRole.admin:
        raise HTTPException(403, "only administrators can do this")
    return current


AdminDep = Annotated[accounts.SignedIn, Depends(require_admin)]


async def require_csrf(request: Request, current: SignedInDep) -> accounts.SignedIn:
    """Every form post carries the session's CSRF token (field `csrf` or the header)."""
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        form = await request.form()
        value = form.get("csrf", "")
        sent = value if isinstance(value, str) else ""
    if not current.accepts(sent):
        raise HTTPException(403, "the form had expired: reload the page and try again")
    return current


PostedDep = Annotated[accounts.SignedIn, Depends(require_csrf)]


def render(
    request: Request,
    current: accounts.SignedIn,
    template: str,
    *,
    section: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page inside admin/layout.html; `section` marks the current item of the menu."""
    notice = NOTICES.get(request.query_params.get("notice", ""), "")
    return pages(request).render(
        template,
        status_code=status_code,
        headers=PAGE_HEADERS,
        user=current.user,
        csrf=current.session.csrf_token,
        section=section,
        notice=notice,
        **context,
    )


def redirect(url: str, notice: str = "") -> RedirectResponse:
    """303 after a successful post; `notice` is a key of NOTICES."""
    assert not notice or notice in NOTICES, notice
    target = f"{url}{'&' if '?' in url else '?'}notice={notice}" if notice else url
    return RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)
