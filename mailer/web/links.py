"""The readers' pages that links in mail open: confirming a signup (only by POST, so
link scanners cannot opt anyone in) and leaving or changing preferences (RFC 8058
one-click included).

These paths are in sent mail: they are stable.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from mailer.errors import MailerError, NotFound
from mailer.http.deps import ServicesDep, client_ip
from mailer.http.responses import READERS
from mailer.subscriptions import leaving, ledger, readers
from mailer.subscriptions.errors import Expired
from mailer.web.fields import MAX_FIELD_LENGTH, as_list, parse_fields
from mailer.web.pages import pages_of
from mailer.web.refusals import bad_link, expired_link, reader_refusal

router = APIRouter(responses=READERS, tags=["public"])


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(token: str, request: Request, services: ServicesDep) -> Response:
    """Shows a button that confirms by POST; a GET alone never confirms."""
    pages = pages_of(request)
    try:
        state = readers.confirmation_state(services, token)
    except NotFound:
        return bad_link(pages)
    if state == "expired":
        return expired_link(pages)
    return pages.render("confirm.html", already=state == "used")


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(token: str, request: Request, services: ServicesDep) -> Response:
    """Confirms the signup the token belongs to; repeating it changes nothing."""
    pages = pages_of(request)
    context = ledger.ConsentContext(
        ip=client_ip(request, services.settings.signup.trusted_proxies),
        user_agent=request.headers.get("user-agent", "")[:1000],
        source_url=request.headers.get("referer", "")[:MAX_FIELD_LENGTH],
    )
    try:
        result = readers.confirm(services, token, context)
    except NotFound:
        return bad_link(pages)
    except Expired:
        return expired_link(pages)
    if result.newly_confirmed:
        services.metrics.confirmations.inc()
    return pages.render("confirmed.html", list_names=result.list_names, already=result.already_used)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, services: ServicesDep) -> Response:
    """One button to leave, and the preference centre; a GET changes nothing."""
    pages = pages_of(request)
    try:
        subscriber_id, list_id = leaving.unsubscribe_target(services.signer, token)
        view = readers.preferences(services, subscriber_id, list_id)
    except NotFound:
        return bad_link(pages)
    return pages.render("unsubscribe.html", view=view, done=None)


@router.post("/unsubscribe/{token}")
async def unsubscribe(token: str, request: Request, services: ServicesDep) -> Response:
    """RFC 8058 one-click (`List-Unsubscribe=One-Click`): no cookie, no redirect, 200,
    idempotent. The preference centre posts `action=preferences` with the lists wanted."""
    pages = pages_of(request)
    try:
        subscriber_id, list_id = leaving.unsubscribe_target(services.signer, token)
        values: dict[str, Any] = {}
        if request.headers.get("content-type"):
            values, _ = await parse_fields(request, services.settings.signup.max_body_bytes)
        choosing = values.get("action") == "preferences"
        context = ledger.ConsentContext(
            form="preferences" if choosing else "one-click",
            ip=client_ip(request, services.settings.signup.trusted_proxies),
            user_agent=request.headers.get("user-agent", "")[:1000],
        )
        if choosing:
            topics = {
                key.removeprefix("topics:"): set(as_list(value))
                for key, value in values.items()
                if key.startswith("topics:")
            }
            wanted = set(as_list(values.get("lists")))
            done = await run_in_threadpool(
                readers.change_preferences, services, subscriber_id, wanted, topics, context
            )
            if done.requested:
                services.sender.notify()
        else:
            targets = {list_id} if list_id is not None else None
            done = await run_in_threadpool(readers.leave, services, subscriber_id, targets, context)
            if done.left:
                services.metrics.unsubscribes.inc()
        view = await run_in_threadpool(readers.preferences, services, subscriber_id, list_id)
    except NotFound:
        return bad_link(pages)
    except MailerError as exc:
        return reader_refusal(request, exc)
    return pages.render("unsubscribe.html", view=view, done=done.view())
