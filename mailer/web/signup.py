"""The readers' signup: the form as a page (iframe-able) and as a script for host pages,
its thank-you page, the theme's CSS, and `POST /subscribe`.

These paths are embedded in third-party pages and in sent mail: they are stable.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from mailer.errors import N_, MailerError, TooMany
from mailer.http.deps import ServicesDep, client_ip
from mailer.http.refusals import speaks_json
from mailer.http.responses import READERS
from mailer.subscriptions import catalog, readers
from mailer.web.fields import parse_fields, signup_of
from mailer.web.pages import pages_of
from mailer.web.refusals import reader_refusal

router = APIRouter(responses=READERS, tags=["public"])

THEME_HEADERS = {"Cache-Control": "public, max-age=300"}


_SIGNUP_FIELDS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "form": {"type": "string", "default": "default"},
        "lists": {"type": "array", "items": {"type": "string"}},
        "name": {"type": "string"},
        "source_url": {"type": "string"},
        "website": {"type": "string", "description": "honeypot: must be empty"},
        "consent": {"type": "string"},
    },
    "required": ["email"],
}


@router.post(
    "/subscribe",
    summary="Sign up (double opt-in)",
    status_code=202,
    responses={
        202: {
            "description": "Accepted (JSON): a confirmation mail is on its way if needed.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"status": {"type": "string", "enum": ["pending"]}},
                        "required": ["status"],
                    }
                }
            },
        },
        303: {"description": "Accepted (HTML form): on to the form's thank-you page."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _SIGNUP_FIELDS},
                "application/x-www-form-urlencoded": {"schema": _SIGNUP_FIELDS},
                "multipart/form-data": {"schema": _SIGNUP_FIELDS},
            },
        }
    },
)
async def subscribe(request: Request, services: ServicesDep) -> Response:
    """Accepts JSON, urlencoded or multipart. The answer never says whether the address
    was known: 202 `{"status": "pending"}` for JSON, 303 to the thank-you page for forms."""
    settings = services.settings.signup
    ip = client_ip(request, settings.trusted_proxies)
    back_url = ""
    try:
        wait = services.ip_limiter.hit(ip)
        if wait:
            raise TooMany(N_("too many signups from your network; try again later"), wait)
        values, _ = await parse_fields(request, settings.max_body_bytes)
        fields = signup_of(values, request)
        if not speaks_json(request) and catalog.SLUG.fullmatch(fields.form):
            back_url = f"/forms/{fields.form}"
        user_agent = request.headers.get("user-agent", "")[:1000]
        result = await run_in_threadpool(readers.sign_up, services, fields, ip, user_agent)
    except MailerError as exc:
        services.metrics.signups_rejected.labels(reason=str(exc.status)).inc()
        return reader_refusal(request, exc, back_url)
    if result is not None:
        services.metrics.signups.inc()
        services.sender.notify()
    if speaks_json(request):
        return JSONResponse({"status": "pending"}, status_code=202)
    thanks = await run_in_threadpool(readers.thanks_url, services, fields.form)
    return RedirectResponse(thanks, status_code=303)


@router.get("/forms/{form_slug}", response_class=HTMLResponse)
def form_page(form_slug: str, request: Request, services: ServicesDep) -> Response:
    """The signup form as a small page that can be shown in an iframe."""
    return pages_of(request).render("form.html", form=readers.form_view(services, form_slug))


@router.get("/forms/{form_slug}/thanks", response_class=HTMLResponse)
def thanks_page(form_slug: str, request: Request, services: ServicesDep) -> Response:
    return pages_of(request).render("thanks.html", form=readers.form_view(services, form_slug))


@router.get("/forms/{form_slug}/embed.js")
def embed_script(form_slug: str, request: Request, services: ServicesDep) -> Response:
    """A script that renders the form into the page that includes it and posts
    cross-origin (no cookies)."""
    view = readers.form_view(services, form_slug)
    script = pages_of(request).render_text(
        "embed.js",
        form_json=json.dumps(view),
        subscribe_url=json.dumps(f"{services.settings.public_url}/subscribe"),
    )
    return Response(
        script,
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/theme.css", include_in_schema=False)
def theme_css(request: Request) -> Response:
    """The configured colours and font as CSS custom properties (reader.css uses them)."""
    return Response(pages_of(request).css, media_type="text/css", headers=THEME_HEADERS)
