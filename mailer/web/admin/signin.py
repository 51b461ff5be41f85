"""Signing in to and out of /admin/: server-side sessions, a double-submit CSRF token on
the sign-in form, the session's token on sign-out, and throttled failed sign-ins
(mailer.signin_throttle)."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from mailer import accounts
from mailer.http.deps import SESSION_COOKIE, ServicesDep, SessionDep, client_ip, signed_in_browser
from mailer.ratelimit import retry_after_header
from mailer.web.admin.common import PAGE_HEADERS, pages

router = APIRouter(prefix="/admin", include_in_schema=False)

LOGIN_CSRF_COOKIE = "mailer_login_csrf"
HOME = "/admin/dashboard"


def _secure(services: ServicesDep) -> bool:
    return services.settings.public_url.startswith("https://")


def _login_page(
    request: Request,
    services: ServicesDep,
    status_code: int = 200,
    error: str = "",
    email: str = "",
) -> Response:
    """The sign-in form with a fresh double-submit CSRF token (cookie and hidden field)."""
    csrf = secrets.token_urlsafe(32)
    response = pages(request).render(
        "admin/login.html",
        status_code=status_code,
        headers=PAGE_HEADERS,
        csrf=csrf,
        error=error,
        email=email,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=_secure(services),
    )
    return response


@router.get("/")
def admin_home(request: Request, services: ServicesDep) -> Response:
    """The sign-in form, or the dashboard when already signed in."""
    if signed_in_browser(request, services) is None:
        return _login_page(request, services)
    return RedirectResponse(HOME, status_code=303, headers=PAGE_HEADERS)


@router.post("/login")
async def admin_login(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=100)],
) -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf.encode()):
        return _login_page(
            request, services, 403, "The form had expired. Please sign in again.", email
        )
    throttle = services.signin_throttle
    ip = client_ip(request, services.settings.signup.trusted_proxies)
    verdict = throttle.check(ip, email)
    if verdict.retry_after:
        response = _login_page(
            request, services, 429, "Too many failed sign-ins. Please wait and try again.", email
        )
        response.headers["Retry-After"] = retry_after_header(verdict.retry_after)
        return response
    # Held on the event loop, not in a worker thread, so held sign-ins cost no thread.
    await asyncio.sleep(verdict.delay)
    lifetime = timedelta(hours=services.settings.admin.session_hours)
    token = await run_in_threadpool(
        _open_session, session, email, password, services.clock.now(), lifetime
    )
    if token is None:
        throttle.failed(ip, email)
        return _login_page(request, services, 401, "That address and password do not match.", email)
    throttle.succeeded(ip, email)
    response = RedirectResponse(HOME, status_code=303, headers=PAGE_HEADERS)
    # Path "/" so the pages' scripts can call /api/v1 as the signed-in editor.
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(services),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin")
    return response


def _open_session(
    session: Session, email: str, password: str, now: datetime, lifetime: timedelta
) -> str | None:
    """A new session's cookie token when the address and password match, else None."""
    user = accounts.authenticate(session, email, password)
    if user is None:
        return None
    return accounts.start_session(session, user, now, lifetime)


@router.post("/logout")
def admin_logout(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    current = accounts.signed_in(
        session, request.cookies.get(SESSION_COOKIE, ""), services.clock.now()
    )
    if current is None:
        return RedirectResponse("/admin/", status_code=303)
    if not current.accepts(csrf):
        return Response("missing or wrong CSRF token", status_code=403, headers=PAGE_HEADERS)
    accounts.end_session(session, current.session, services.clock.now())
    response = RedirectResponse("/admin/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
