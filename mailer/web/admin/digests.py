"""/admin/digests: create and edit with a cron builder, live preview, test-send, send
now.

The pages parse the form into the API's schemas (`DigestCreate`, `DigestUpdate`,
`TestSend`), call the same actions as the editors' API (`content.digest_actions`) and
present the result; the cron builder's next five runs come from
`GET /api/v1/digests/schedule`.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import datetime
from html import escape
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from sqlmodel import Session

from mailer import accounts
from mailer.content import digests
from mailer.content.schedules import BadSchedule, describe, local_runs, run_label
from mailer.delivery import digest_actions
from mailer.delivery.render import RenderedMail
from mailer.errors import Invalid, MailerError
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import Digest, MailingList
from mailer.schemas import DigestCreate, DigestUpdate, TestSend
from mailer.services import Services
from mailer.subscriptions.catalog import all_lists
from mailer.subscriptions.errors import UnknownList
from mailer.web.admin import drafts
from mailer.web.admin.common import PAGE_HEADERS, PostedDep, SignedInDep, redirect, render
from mailer.web.admin.times import in_zone

router = APIRouter(prefix="/admin/digests")

PREVIEW_HEADERS = {
    # The email's own styles are inline; it runs no script and loads images over https only.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "frame-ancestors 'self'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    **PAGE_HEADERS,
}
TEMPLATE_PARTS = ("subject", "html", "text")


@functools.cache
def time_zones() -> list[str]:
    """The IANA zone names this system knows, for the time zone field's suggestions."""
    return sorted(zoneinfo.available_timezones())


def digest_form(
    name: Annotated[str, Form()] = "",
    list_slug: Annotated[str, Form(alias="list")] = "",
    schedule: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "UTC",
    topics: Annotated[str, Form()] = "",
    max_articles: Annotated[str, Form()] = "10",
    enabled: Annotated[str, Form()] = "",
    subject_template: Annotated[str, Form()] = "",
    html_template: Annotated[str, Form()] = "",
    text_template: Annotated[str, Form()] = "",
) -> dict[str, str]:
    """The digest form as posted: strings, shown again as they were when refused."""
    return {
        "name": name,
        "list": list_slug,
        "schedule": schedule,
        "timezone": timezone.strip() or "UTC",
        "topics": topics,
        "max_articles": max_articles,
        "enabled": "on" if enabled else "",
        "subject_template": subject_template,
        "html_template": html_template,
        "text_template": text_template,
    }


DraftDep = Annotated[dict[str, str], Depends(digest_form)]


def _draft_of(digest: Digest, mailing_list: MailingList | None) -> dict[str, str]:
    return {
        "name": digest.name,
        "list": mailing_list.slug if mailing_list else "",
        "schedule": digest.schedule,
        "timezone": digest.timezone,
        "topics": ", ".join(digest.topics),
        "max_articles": str(digest.max_articles),
        "enabled": "on" if digest.enabled else "",
        "subject_template": digest.subject_template,
        "html_template": digest.html_template,
        "text_template": digest.text_template,
    }


def _fields(draft: dict[str, str]) -> dict[str, Any]:
    """The editable fields from the form, for the schemas to check."""
    return {
        "name": draft["name"],
        "schedule": draft["schedule"],
        "timezone": draft["timezone"],
        "topics": [topic.strip() for topic in draft["topics"].split(",") if topic.strip()],
        "max_articles": draft["max_articles"].strip(),
        "enabled": draft["enabled"] == "on",
        **{f"{part}_template": draft[f"{part}_template"] for part in TEMPLATE_PARTS},
    }


def _refusal(exc: ValidationError | MailerError) -> str:
    """Why the form was refused, as the page shows it."""
    if isinstance(exc, ValidationError):
        return drafts.problems(exc, {"list_slug": "list"})
    if isinstance(exc, UnknownList):
        return f"list: {exc.message}; choose one of the lists"
    return str(exc)


def _not_shown(exc: MailerError) -> str:
    """Why the preview is not shown: the reason alone when there is nothing new."""
    return exc.reason if isinstance(exc, digest_actions.NothingToPreview) else exc.message


def _upcoming(digest: Digest | dict[str, str], now: datetime) -> tuple[str, list[str]]:
    """The schedule in words and its next five runs in the digest's zone (labels)."""
    schedule = digest["schedule"] if isinstance(digest, dict) else digest.schedule
    timezone = digest["timezone"] if isinstance(digest, dict) else digest.timezone
    if not schedule:
        return "", []
    try:
        return describe(schedule), [
            run_label(run) for run in local_runs(schedule, timezone, now, 5)
        ]
    except BadSchedule:
        return "", []


def _in_zone(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return ""
    return run_label(in_zone(moment, timezone)[0])


# ---- the list ------------------------------------------------------------------------


@router.get("")
def list_page(
    request: Request, current: SignedInDep, session: SessionDep, services: ServicesDep
) -> Response:
    lists = {mailing_list.id: mailing_list for mailing_list in all_lists(session)}
    rows = []
    for digest in digests.all_digests(session):
        mailing_list = lists.get(digest.list_id)
        rows.append(
            {
                "digest": digest,
                "list": mailing_list.name if mailing_list else "",
                "described": describe(digest.schedule) if digest.schedule else "one-off",
                "next_run": _in_zone(digest.next_run_at, digest.timezone),
                "last_sent": _in_zone(digest.last_sent_at, digest.timezone),
            }
        )
    return render(request, current, "admin/digests.html", section="digests", rows=rows)


# ---- create --------------------------------------------------------------------------


def _new_page(
    request: Request,
    current: accounts.SignedIn,
    session: Session,
    services: Services,
    draft: dict[str, str],
    error: str = "",
    status_code: int = 200,
) -> Response:
    described, upcoming = _upcoming(draft, services.clock.now())
    return render(
        request,
        current,
        "admin/digest_new.html",
        section="digests",
        status_code=status_code,
        draft=draft,
        lists=all_lists(session),
        zones=time_zones(),
        described=described,
        upcoming=upcoming,
        error=error,
    )


@router.get("/new")
def new_page(
    request: Request, current: SignedInDep, session: SessionDep, services: ServicesDep
) -> Response:
    draft = digest_form()
    draft.update(schedule="0 7 * * 1-5", enabled="on")
    return _new_page(request, current, session, services, draft)


@router.post("/new")
def create(
    request: Request,
    current: PostedDep,
    draft: DraftDep,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    """Create the digest; a refused form is shown again with the reason, nothing written."""
    try:
        body = DigestCreate.model_validate(_fields(draft) | {"list": draft["list"]})
        digest = digest_actions.define(session, services, body)
    except (ValidationError, MailerError) as exc:
        session.rollback()
        return _new_page(request, current, session, services, draft, _refusal(exc), 422)
    session.commit()
    return redirect(f"/admin/digests/{digest.id}", "created")


# ---- one digest: edit, preview, test-send, send now ----------------------------------


def _digest_page(
    request: Request,
    current: accounts.SignedIn,
    session: Session,
    services: Services,
    digest: Digest,
    draft: dict[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
    **extra: Any,
) -> Response:
    mailing_list = session.get(MailingList, digest.list_id)
    described, upcoming = _upcoming(digest, services.clock.now())
    preview_error = ""
    mail: RenderedMail | None = None
    articles = 0
    try:
        shown = digest_actions.preview(session, services, digest)
        mail, articles = shown.mail, len(shown.articles)
    except MailerError as exc:
        preview_error = _not_shown(exc)
    return render(
        request,
        current,
        "admin/digest.html",
        section="digests",
        status_code=status_code,
        digest=digest,
        mailing_list=mailing_list,
        draft=draft or _draft_of(digest, mailing_list),
        zones=time_zones(),
        described=described,
        upcoming=upcoming,
        next_run=_in_zone(digest.next_run_at, digest.timezone),
        last_sent=_in_zone(digest.last_sent_at, digest.timezone),
        mail=mail,
        articles=articles,
        preview_error=preview_error,
        error=error,
        **extra,
    )


@router.get("/{digest_id}")
def digest_page(
    digest_id: int,
    request: Request,
    current: SignedInDep,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    return _digest_page(request, current, session, services, digests.get(session, digest_id))


@router.post("/{digest_id}")
def update(
    digest_id: int,
    request: Request,
    current: PostedDep,
    draft: DraftDep,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    """Save the digest; a refused form is shown again with the reason, nothing written."""
    try:
        body = DigestUpdate.model_validate(_fields(draft))
        digest_actions.update(session, services, digest_id, body)
    except (ValidationError, MailerError) as exc:
        session.rollback()
        digest = digests.get(session, digest_id)
        return _digest_page(request, current, session, services, digest, draft, _refusal(exc), 422)
    session.commit()
    return redirect(f"/admin/digests/{digest_id}", "saved")


def _preview_document(body: str) -> HTMLResponse:
    return HTMLResponse(body, headers=PREVIEW_HEADERS)


def _problem_document(exc: MailerError) -> HTMLResponse:
    """Why the preview cannot be shown, with the refusal's status (the frame shows it)."""
    shown = _preview_document(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Preview</title>'
        '</head><body><p style="font-family: sans-serif; color: #991b1b">'
        f"The preview cannot be shown: {escape(_not_shown(exc))}</p></body></html>"
    )
    shown.status_code = exc.status
    return shown


@router.get("/{digest_id}/preview.html")
def preview_html(
    digest_id: int, _current: SignedInDep, session: SessionDep, services: ServicesDep
) -> Response:
    """The saved digest's HTML as it would go out now, for the preview frame."""
    digest = digests.get(session, digest_id)
    try:
        shown = digest_actions.preview(session, services, digest)
    except MailerError as exc:
        return _problem_document(exc)
    return _preview_document(shown.mail.html)


def _draft_preview(
    session: Session, services: Services, digest_id: int, draft: dict[str, str]
) -> RenderedMail | MailerError:
    """The unsaved draft as it would go out now, or why not (the schema's complaints in
    the page's words, or the preview's refusal); writes nothing."""
    try:
        body = DigestUpdate.model_validate(_fields(draft))
        return digest_actions.preview_draft(session, services, digest_id, body).mail
    except ValidationError as exc:
        return Invalid("", _refusal(exc))
    except MailerError as exc:
        return exc
    finally:
        session.rollback()


@router.post("/{digest_id}/preview.html")
def preview_draft_html(
    digest_id: int,
    _current: PostedDep,
    draft: DraftDep,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    """The form's unsaved draft as HTML, posted into the preview frame; writes nothing."""
    mail = _draft_preview(session, services, digest_id, draft)
    if isinstance(mail, MailerError):
        return _problem_document(mail)
    return _preview_document(mail.html)


@router.post("/{digest_id}/preview.json")
def preview_draft_json(
    digest_id: int,
    _current: PostedDep,
    draft: DraftDep,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    """The draft's subject and text for the page's script; writes nothing."""
    mail = _draft_preview(session, services, digest_id, draft)
    if isinstance(mail, MailerError):
        shown = {"subject": "", "text": "", "error": _not_shown(mail)}
    else:
        shown = {"subject": mail.subject, "text": mail.text, "error": ""}
    return JSONResponse(shown, headers=PAGE_HEADERS)


ADDRESS_SEPARATORS = re.compile(r"[\s,;]+")


@router.post("/{digest_id}/test")
def test_send(
    digest_id: int,
    request: Request,
    current: PostedDep,
    session: SessionDep,
    services: ServicesDep,
    addresses: Annotated[str, Form()] = "",
) -> Response:
    """Send the preview marked [TEST] to the given addresses only; shows who got it."""
    digest = digests.get(session, digest_id)
    given = [part for part in ADDRESS_SEPARATORS.split(addresses) if part]
    session.rollback()  # no transaction stays open while the relay answers
    try:
        body = TestSend.model_validate({"addresses": given})
        result = anyio.from_thread.run(digest_actions.test_send, services, digest_id, body)
    except (ValidationError, MailerError) as exc:
        message = (
            "give one to twenty addresses, one a line"
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        return _digest_page(
            request,
            current,
            session,
            services,
            digest,
            test_error=message,
            status_code=422,
            test_addresses=addresses,
        )
    return _digest_page(
        request,
        current,
        session,
        services,
        digest,
        test_sent=result.sent,
        test_failed=result.failed,
        test_addresses=addresses,
    )


@router.post("/{digest_id}/send")
def send_now(
    digest_id: int, _current: PostedDep, session: SessionDep, services: ServicesDep
) -> Response:
    """Start a send now (as the API's send_now) and show its progress; 409 when a send of
    this moment exists."""
    send, _counts = digest_actions.send_now(session, services, digest_id)
    return redirect(f"/admin/sends/{send.id}", "skipped" if send.status == "skipped" else "started")
