"""Readers' endpoints: signup form and script, subscribe, confirm, unsubscribe, health.

These paths are embedded in third-party pages and in sent mail: they are stable.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from sqlmodel import select
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from mailer.api.responses import READERS
from mailer.db import serves, session_scope
from mailer.delivery import outbox
from mailer.http.deps import ServicesDep, client_ip
from mailer.models import MailingList, Subscriber, SubscriptionStatus
from mailer.ratelimit import retry_after_header
from mailer.services import Services
from mailer.subscriptions import catalog, leaving, ledger, signup
from mailer.subscriptions.addresses import address_digest, check_header_safe, normalize_email
from mailer.subscriptions.errors import (
    Expired,
    InvalidInput,
    NotFound,
    UnknownForm,
)
from mailer.tokens import BadToken, Purpose
from mailer.web.pages import Pages

log = logging.getLogger(__name__)
router = APIRouter(responses=READERS)

MAX_FIELD_LENGTH = 2000
TRUE_VALUES = {"1", "true", "on", "yes"}
THEME_HEADERS = {"Cache-Control": "public, max-age=300"}


def N_(message: str) -> str:  # noqa: N802 (the name pybabel looks for)
    """Marks a message for the catalogues; it is translated where it is shown."""
    return message


class BadRequest(Exception):
    """A request the reader (or a bot) must fix; carries the status to answer with.

    `message` is English with %(name)s placeholders filled from `params`; readers see it
    in their language. `general` is shown instead when the catalogue cannot translate
    `message` (a library's own sentence)."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str = "",
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        general: str = "",
    ) -> None:
        self.template = message
        self.params = params or {}
        self.message = message % self.params if self.params else message
        super().__init__(self.message)
        self.status = status
        self.field = field
        self.headers = headers or {}
        self.general = general

    def for_reader(self, pages: Pages) -> str:
        """The message in the readers' language."""
        if not pages.knows(self.template) and self.general:
            return pages.gettext(self.general)
        return pages.gettext(self.template, **self.params)


@dataclass
class SignupFields:
    email: str = ""
    name: str = ""
    form: str = "default"
    lists: list[str] = field(default_factory=list)
    source_url: str = ""
    website: str = ""
    consent: bool = False


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BadRequest(
                    413,
                    N_("the request body is larger than %(limit)s bytes"),
                    params={"limit": limit},
                )
        except ValueError as exc:
            raise BadRequest(400, N_("bad Content-Length")) from exc
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(
                    413,
                    N_("the request body is larger than %(limit)s bytes"),
                    params={"limit": limit},
                )
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise BadRequest(400, N_("the client went away before sending the whole body")) from exc
    body = b"".join(chunks)
    request._body = body  # let request.form() parse what was already read
    return body


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    result: list[str] = []
    for item in values:
        if not isinstance(item, str):
            raise BadRequest(422, N_("lists must be list slugs"), "lists")
        result.extend(part.strip() for part in item.split(",") if part.strip())
    return result


def _text(values: dict[str, Any], name: str) -> str:
    value = values.get(name, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else ""
    if not isinstance(value, str | int | float):
        raise BadRequest(422, N_("%(name)s must be a string"), name, params={"name": name})
    text = str(value)
    if len(text) > MAX_FIELD_LENGTH:
        raise BadRequest(422, N_("%(name)s is too long"), name, params={"name": name})
    return text


def _many(field: str) -> bool:
    """Fields that may repeat: the lists ticked, and each list's topics."""
    return field == "lists" or field.startswith("topics:")


async def parse_fields(request: Request, limit: int) -> tuple[dict[str, Any], bool]:
    """The submitted fields, and whether the client speaks JSON."""
    body = await read_body(request, limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            values = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(400, N_("the body is not valid JSON")) from exc
        if not isinstance(values, dict):
            raise BadRequest(400, N_("the JSON body must be an object"))
        return values, True
    if content_type == "application/x-www-form-urlencoded":
        try:
            parsed = parse_qs(
                body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=50,
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(400, N_("the form body is malformed")) from exc
        values = {k: v if _many(k) else v[0] for k, v in parsed.items()}
        return values, False
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=0, max_fields=50)
        except Exception as exc:  # python-multipart raises several types on bad input
            raise BadRequest(400, N_("the multipart body is malformed")) from exc
        values = {}
        for key in form:
            items = form.getlist(key)
            if any(isinstance(item, UploadFile) for item in items):
                raise BadRequest(400, N_("file uploads are not accepted"))
            values[key] = items if _many(key) else items[0]
        return values, False
    raise BadRequest(415, N_("send application/json, urlencoded or multipart form data"))


def wants_json(request: Request, json_body: bool) -> bool:
    accept = request.headers.get("accept", "")
    return json_body or ("application/json" in accept and "text/html" not in accept)


def signup_fields(values: dict[str, Any], request: Request) -> SignupFields:
    fields = SignupFields(
        email=_text(values, "email"),
        name=_text(values, "name").strip(),
        form=_text(values, "form") or "default",
        lists=_as_list(values.get("lists")),
        source_url=_text(values, "source_url") or request.headers.get("referer", ""),
        website=_text(values, "website"),
        consent=_text(values, "consent").lower() in TRUE_VALUES,
    )
    fields.source_url = fields.source_url[:MAX_FIELD_LENGTH]
    return fields


def error_response(exc: BadRequest, as_json: bool, pages: Pages, back_url: str = "") -> Response:
    """The refusal in the readers' language: JSON for scripts (embed.js shows `detail`),
    else a page with a link back to the form."""
    if as_json:
        body: dict[str, Any] = {"detail": exc.for_reader(pages)}
        if exc.field:
            body["field"] = exc.field
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)
    return pages.render(
        "message.html",
        status_code=exc.status,
        headers=exc.headers,
        title=pages.gettext("We could not sign you up"),
        message=exc.for_reader(pages),
        back_url=back_url,
    )


def _pages(request: Request) -> Pages:
    return request.app.state.pages


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
    tags=["public"],
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
    as_json = "application/json" in request.headers.get("content-type", "")
    ip = client_ip(request, settings.trusted_proxies)
    back_url = ""
    try:
        wait = services.ip_limiter.hit(ip)
        if wait:
            raise BadRequest(
                429,
                N_("too many signups from your network; try again later"),
                headers={"Retry-After": retry_after_header(wait)},
            )
        values, as_json = await parse_fields(request, settings.max_body_bytes)
        as_json = wants_json(request, as_json)
        fields = signup_fields(values, request)
        if not as_json and catalog.SLUG.fullmatch(fields.form):
            back_url = f"/forms/{fields.form}"
        result = await run_in_threadpool(_signup, services, request, fields, ip)
    except BadRequest as exc:
        services.metrics.signups_rejected.labels(reason=str(exc.status)).inc()
        return error_response(exc, as_json, _pages(request), back_url)
    if result is not None:
        services.metrics.signups.inc()
        services.sender.notify()
    if as_json:
        return JSONResponse({"status": "pending"}, status_code=202)
    return RedirectResponse(_thanks_url(services, fields.form), status_code=303)


def _thanks_url(services: Services, form_slug: str) -> str:
    with session_scope(services.engine) as session:
        form = catalog.form_by_slug(session, form_slug)
        return catalog.thanks_redirect(form, catalog.host_of(services.settings.public_url))


# What a reader is told when the catalogue has no translation of a field's exact problem.
_GENERAL = {
    "email": N_("Please enter a valid email address."),
    "name": N_("Please check the name you entered."),
    "source_url": N_("The address of the page you came from is not valid."),
}


def _reader_message(exc: InvalidInput) -> str:
    """The message a reader sees: email-validator's are whole sentences, ours are
    fragments that follow the field's name ("email is required")."""
    if exc.message[:1].isupper():
        return exc.message
    return f"{exc.field} {exc.message}"


def _signup(
    services: Services, request: Request, fields: SignupFields, ip: str
) -> signup.SignupResult | None:
    """Validate and record a signup; None when the honeypot was filled."""
    settings = services.settings
    with session_scope(services.engine) as session:
        try:
            form = catalog.form_by_slug(session, fields.form)
        except UnknownForm as exc:
            raise BadRequest(
                404, N_("there is no signup form %(form)r"), "form", params={"form": fields.form}
            ) from exc
        if fields.website:
            log.info("honeypot filled on form %s; ignored", form.slug)
            return None
        offered = {
            mailing_list.slug: mailing_list for mailing_list in catalog.lists_of_form(session, form)
        }
        unknown = [slug for slug in fields.lists if slug not in offered]
        if unknown:
            raise BadRequest(
                422,
                N_("form %(form)r does not offer %(lists)s"),
                "lists",
                params={"form": form.slug, "lists": ", ".join(unknown)},
            )
        chosen = [offered[slug] for slug in dict.fromkeys(fields.lists)] or list(offered.values())
        try:
            email = normalize_email(fields.email)
            name = check_header_safe("name", fields.name)[:200]
            check_header_safe("source_url", fields.source_url)
        except InvalidInput as exc:
            raise BadRequest(
                422, _reader_message(exc), exc.field, general=_GENERAL.get(exc.field, "")
            ) from exc
        if form.consent_checkbox and not fields.consent:
            raise BadRequest(422, N_("please tick the box to agree to the terms"), "consent")
        wait = services.address_limiter.hit(address_digest(email))
        if wait:
            raise BadRequest(
                429,
                N_("too many signups for this address; try again later"),
                headers={"Retry-After": retry_after_header(wait)},
            )
        context = ledger.ConsentContext(
            form=form.slug,
            consent_text=form.consent_text,
            consent_version=form.consent_version,
            source_url=fields.source_url,
            ip=ip,
            user_agent=request.headers.get("user-agent", "")[:1000],
        )
        return signup.request(
            session,
            email=email,
            name=name,
            lists=chosen,
            form_id=form.id,
            context=context,
            settings=settings.signup,
            now=services.clock.now(),
        )


# ---- signup form page, thank-you page, embeddable script -------------------------------


def _form_view(services: Services, slug: str) -> dict[str, Any]:
    with session_scope(services.engine) as session:
        try:
            form = catalog.form_by_slug(session, slug)
        except UnknownForm as exc:
            raise BadRequest(
                404, N_("there is no signup form %(form)r"), params={"form": slug}
            ) from exc
        lists = catalog.lists_of_form(session, form)
        return {
            "slug": form.slug,
            "heading": form.heading,
            "consent_text": form.consent_text,
            "consent_checkbox": form.consent_checkbox,
            "thanks_message": form.thanks_message,
            "lists": [{"slug": item.slug, "name": item.name} for item in lists],
        }


@router.get("/forms/{form_slug}", response_class=HTMLResponse, tags=["public"])
def form_page(form_slug: str, request: Request, services: ServicesDep) -> Response:
    """The signup form as a small page that can be shown in an iframe."""
    try:
        view = _form_view(services, form_slug)
    except BadRequest as exc:
        return error_response(exc, False, _pages(request))
    return _pages(request).render("form.html", form=view)


@router.get("/forms/{form_slug}/thanks", response_class=HTMLResponse, tags=["public"])
def thanks_page(form_slug: str, request: Request, services: ServicesDep) -> Response:
    try:
        view = _form_view(services, form_slug)
    except BadRequest as exc:
        return error_response(exc, False, _pages(request))
    return _pages(request).render("thanks.html", form=view)


@router.get("/forms/{form_slug}/embed.js", tags=["public"])
def embed_script(form_slug: str, request: Request, services: ServicesDep) -> Response:
    """A script that renders the form into the page that includes it and posts
    cross-origin (no cookies)."""
    try:
        view = _form_view(services, form_slug)
    except BadRequest as exc:
        return PlainTextResponse(
            f"// {exc.message}\n", status_code=exc.status, media_type="application/javascript"
        )
    script = _pages(request).render_text(
        "embed.js",
        form_json=json.dumps(view),
        subscribe_url=json.dumps(f"{services.settings.public_url}/subscribe"),
    )
    return Response(
        script,
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/theme.css", tags=["public"], include_in_schema=False)
def theme_css(request: Request) -> Response:
    """The configured colours and font as CSS custom properties (reader.css uses them)."""
    return Response(_pages(request).css, media_type="text/css", headers=THEME_HEADERS)


# ---- confirm ---------------------------------------------------------------------------


def _confirmation_id(services: Services, token: str) -> int:
    try:
        data = services.signer.verify(Purpose.confirm, token)
    except BadToken as exc:
        raise NotFound("token") from exc
    confirmation_id = data.get("c")
    if not isinstance(confirmation_id, int):
        raise NotFound("token")
    return confirmation_id


def _confirm_state(services: Services, token: str) -> str:
    from mailer.models import Confirmation

    confirmation_id = _confirmation_id(services, token)
    with session_scope(services.engine) as session:
        confirmation = session.get(Confirmation, confirmation_id)
        if confirmation is None:
            raise NotFound("confirmation")
        if confirmation.used_at is not None:
            return "used"
        if confirmation.revoked_at is not None or confirmation.expires_at <= services.clock.now():
            return "expired"
        return "open"


@router.get("/confirm/{token}", response_class=HTMLResponse, tags=["public"])
def confirm_page(token: str, request: Request, services: ServicesDep) -> Response:
    """Shows a button that confirms by POST; a GET alone never confirms."""
    pages = _pages(request)
    try:
        state = _confirm_state(services, token)
    except NotFound:
        return _bad_link(pages)
    if state == "expired":
        return _expired_link(pages)
    return pages.render("confirm.html", already=state == "used")


@router.post("/confirm/{token}", response_class=HTMLResponse, tags=["public"])
def confirm(token: str, request: Request, services: ServicesDep) -> Response:
    """Confirms the signup the token belongs to; repeating it changes nothing."""
    pages = _pages(request)
    context = ledger.ConsentContext(
        ip=client_ip(request, services.settings.signup.trusted_proxies),
        user_agent=request.headers.get("user-agent", "")[:1000],
        source_url=request.headers.get("referer", "")[:MAX_FIELD_LENGTH],
    )
    try:
        confirmation_id = _confirmation_id(services, token)
        with session_scope(services.engine) as session:
            result = signup.confirm(session, confirmation_id, context, services.clock.now())
    except NotFound:
        return _bad_link(pages)
    except Expired:
        return _expired_link(pages)
    if result.newly_confirmed:
        services.metrics.confirmations.inc()
    return pages.render("confirmed.html", list_names=result.list_names, already=result.already_used)


def _bad_link(pages: Pages) -> Response:
    return pages.render(
        "message.html",
        status_code=404,
        title=pages.gettext("This link is not valid"),
        message=pages.gettext("Please check that you copied the whole link from the email."),
    )


def _expired_link(pages: Pages) -> Response:
    return pages.render(
        "message.html",
        status_code=410,
        title=pages.gettext("This link has expired"),
        message=pages.gettext("Please sign up again; we will send you a new link."),
    )


# ---- unsubscribe and preferences -------------------------------------------------------


def _preferences_view(
    services: Services, subscriber_id: int, list_id: int | None
) -> dict[str, Any]:
    with session_scope(services.engine) as session:
        subscriber_id = leaving.surviving_id(session, subscriber_id)
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            raise NotFound("subscriber")
        statuses = leaving.list_statuses(session, subscriber_id)
        chosen = {
            sub.list_id: sub.topics
            for sub in signup.subscriptions_by_list(session, subscriber_id).values()
        }
        target = session.get(MailingList, list_id) if list_id is not None else None
        return {
            "erased": subscriber.erased_at is not None,
            "target_name": target.name if target else "",
            "lists": [
                {
                    "slug": item.slug,
                    "name": item.name,
                    "description": item.description,
                    "status": status,
                    "topics": leaving.list_topics(session, item.id or 0)
                    if status == SubscriptionStatus.confirmed
                    else [],
                    "chosen": chosen.get(item.id or 0) or [],
                }
                for item, status in statuses
                if status is not None or item.id == list_id
            ],
        }


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, tags=["public"])
def unsubscribe_page(token: str, request: Request, services: ServicesDep) -> Response:
    """One button to leave, and the preference centre; a GET changes nothing."""
    pages = _pages(request)
    try:
        subscriber_id, list_id = leaving.unsubscribe_target(services.signer, token)
        view = _preferences_view(services, subscriber_id, list_id)
    except NotFound:
        return _bad_link(pages)
    return pages.render("unsubscribe.html", view=view, done=None)


@router.post("/unsubscribe/{token}", tags=["public"])
async def unsubscribe(token: str, request: Request, services: ServicesDep) -> Response:
    """RFC 8058 one-click (`List-Unsubscribe=One-Click`): no cookie, no redirect, 200,
    idempotent. The preference centre posts `action=preferences` with the lists wanted."""
    pages = _pages(request)
    try:
        subscriber_id, list_id = leaving.unsubscribe_target(services.signer, token)
        values: dict[str, Any] = {}
        if request.headers.get("content-type"):
            values, _ = await parse_fields(request, services.settings.signup.max_body_bytes)
    except NotFound:
        return _bad_link(pages)
    except BadRequest as exc:
        return error_response(exc, False, pages)
    context = ledger.ConsentContext(
        form="preferences" if values.get("action") == "preferences" else "one-click",
        ip=client_ip(request, services.settings.signup.trusted_proxies),
        user_agent=request.headers.get("user-agent", "")[:1000],
    )
    try:
        if values.get("action") == "preferences":
            wanted = set(_as_list(values.get("lists")))
            done = await run_in_threadpool(
                _apply_preferences,
                services,
                subscriber_id,
                wanted,
                {k: v for k, v in values.items() if k.startswith("topics:")},
                context,
            )
        else:
            targets = {list_id} if list_id is not None else None
            done = await run_in_threadpool(_unsubscribe, services, subscriber_id, targets, context)
        view = await run_in_threadpool(_preferences_view, services, subscriber_id, list_id)
    except NotFound:
        return _bad_link(pages)
    except BadRequest as exc:
        return error_response(exc, False, pages)
    return pages.render("unsubscribe.html", view=view, done=done)


def _unsubscribe(
    services: Services,
    subscriber_id: int,
    list_ids: set[int] | None,
    context: ledger.ConsentContext,
) -> dict[str, Any]:
    with session_scope(services.engine) as session:
        left = leaving.unsubscribe(session, subscriber_id, list_ids, context, services.clock.now())
    if left:
        services.metrics.unsubscribes.inc()
    return {"unsubscribed": True, "left": left, "requested": []}


def _apply_preferences(
    services: Services,
    subscriber_id: int,
    wanted: set[str],
    topic_choices: dict[str, Any],
    context: ledger.ConsentContext,
) -> dict[str, Any]:
    """Leave the lists unticked now; ticked lists not yet confirmed get a confirmation mail;
    topics chosen for a confirmed list are kept (`topic_choices`: "topics:<slug>" fields)."""
    now = services.clock.now()
    with session_scope(services.engine) as session:
        subscriber_id = leaving.surviving_id(session, subscriber_id)
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None or subscriber.erased_at is not None:
            raise NotFound("subscriber")
        lists = {item.slug: item for item in session.scalars(select(MailingList))}
        unknown = wanted - lists.keys()
        if unknown:
            raise BadRequest(
                422,
                N_("unknown list %(lists)s"),
                "lists",
                params={"lists": ", ".join(sorted(unknown))},
            )
        statuses = {
            item.slug: status for item, status in leaving.list_statuses(session, subscriber_id)
        }
        to_leave: set[int] = {
            lists[slug].id or 0
            for slug, status in statuses.items()
            if slug not in wanted
            and status in (SubscriptionStatus.confirmed, SubscriptionStatus.pending)
        }
        left = (
            leaving.unsubscribe(
                session,
                subscriber_id,
                to_leave,
                context,
                now,
            )
            if to_leave
            else []
        )
        topics_changed = [
            slug
            for slug in sorted(wanted)
            if statuses.get(slug) == SubscriptionStatus.confirmed
            and f"topics:{slug}" in topic_choices
            and leaving.set_topics(
                session,
                subscriber_id,
                lists[slug].id or 0,
                set(_as_list(topic_choices[f"topics:{slug}"])),
                context,
                now,
            )
        ]
        to_request = [
            lists[slug]
            for slug in sorted(wanted)
            if statuses.get(slug) != SubscriptionStatus.confirmed
        ]
        if to_request:
            signup.request(
                session,
                email=subscriber.email,
                name=subscriber.name,
                lists=to_request,
                form_id=None,
                context=ledger.ConsentContext(
                    form="preferences",
                    consent_text=signup.PREFERENCES_WORDING,
                    ip=context.ip,
                    user_agent=context.user_agent,
                ),
                settings=services.settings.signup,
                now=now,
            )
    if to_request:
        services.sender.notify()
    return {
        "unsubscribed": False,
        "left": [lists[slug].name for slug in left],
        "requested": [item.name for item in to_request],
        "topics_changed": [lists[slug].name for slug in topics_changed],
    }


# ---- health and metrics ----------------------------------------------------------------


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz", tags=["health"], responses={503: {"description": "The database does not answer."}}
)
def readyz(services: ServicesDep) -> Response:
    """The database answers, with mailer's schema in it."""
    if serves(services.engine):
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "database unreachable"}, status_code=503)


@router.get("/metrics", tags=["health"])
def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics."""
    try:
        with session_scope(services.engine) as session:
            services.metrics.outbox_depth.set(outbox.depth(session))
    except Exception:
        log.warning("could not read the outbox depth for /metrics")
    return Response(
        services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
