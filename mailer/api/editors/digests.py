"""/api/v1/digests: define digests, preview them, test-send them, send them now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from mailer.api.deps import EditorDep, ServicesDep, SessionDep
from mailer.content import digests
from mailer.delivery import message, sends
from mailer.delivery.render import RenderedMail, TemplateProblem, fill
from mailer.delivery.transport import DeliveryError, make_transport
from mailer.models import Digest, MailingList
from mailer.scheduling import BadSchedule, next_run_of, next_runs, trigger, zone
from mailer.schemas import (
    ArticlePublic,
    DigestCreate,
    DigestPublic,
    DigestUpdate,
    Preview,
    SendPublic,
    TestSend,
    TestSendResult,
)
from mailer.services import Services
from mailer.subscriptions.addresses import normalize_email
from mailer.subscriptions.errors import InvalidInput

router = APIRouter(prefix="/digests", tags=["digests"])


def public(session: Session, digest: Digest, services: Services) -> DigestPublic:
    mailing_list = session.get(MailingList, digest.list_id)
    upcoming = (
        next_runs(digest.schedule, digest.timezone, services.clock.now(), 5)
        if digest.schedule
        else ([digest.next_run_at] if digest.next_run_at else [])
    )
    return DigestPublic.model_validate(
        {
            **{name: getattr(digest, name) for name in digests.EDITABLE},
            "id": digest.id,
            "list": mailing_list.slug if mailing_list else "",
            "next_run_at": digest.next_run_at,
            "next_runs": upcoming,
            "last_sent_at": digest.last_sent_at,
        }
    )


def _checked(fields: dict[str, Any], services: Services) -> dict[str, Any]:
    """Refuse a bad schedule, time zone or template before anything is written."""
    try:
        if "timezone" in fields:
            zone(fields["timezone"])
        if fields.get("schedule"):
            trigger(fields["schedule"], fields.get("timezone", "UTC"))
        for part in ("subject", "html", "text"):
            source = fields.get(f"{part}_template")
            if source:
                services.renderer.check(part, source)
    except BadSchedule as exc:
        raise InvalidInput("schedule", str(exc)) from exc
    except TemplateProblem as exc:
        raise InvalidInput("template", str(exc)) from exc
    return fields


def _schedule(digest: Digest, services: Services) -> None:
    try:
        digest.next_run_at = next_run_of(digest, services.clock.now())
    except BadSchedule as exc:
        raise InvalidInput("schedule", str(exc)) from exc


@router.post("", status_code=201, response_model=DigestPublic)
def create_digest(
    body: DigestCreate, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> DigestPublic:
    """Define a digest; `schedule` is a 5-field cron expression in `timezone`."""
    fields = _checked(body.model_dump(exclude={"list_slug"}), services)
    digest = digests.create(session, body.list_slug, fields, services.clock.now())
    _schedule(digest, services)
    session.add(digest)
    return public(session, digest, services)


@router.get("", response_model=list[DigestPublic])
def list_digests(
    session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> list[DigestPublic]:
    return [public(session, d, services) for d in digests.all_digests(session)]


@router.get("/{digest_id}", response_model=DigestPublic)
def get_digest(
    digest_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> DigestPublic:
    return public(session, digests.get(session, digest_id), services)


@router.patch("/{digest_id}", response_model=DigestPublic)
def update_digest(
    digest_id: int,
    body: DigestUpdate,
    session: SessionDep,
    services: ServicesDep,
    _editor: EditorDep,
) -> DigestPublic:
    digest = digests.get(session, digest_id)
    fields = body.model_dump(exclude_unset=True)
    _checked({"timezone": digest.timezone, **fields}, services)
    digests.apply(session, digest, fields, services.clock.now())
    _schedule(digest, services)
    session.add(digest)
    return public(session, digest, services)


@router.delete("/{digest_id}", status_code=204)
def delete_digest(digest_id: int, session: SessionDep, _editor: EditorDep) -> Response:
    """Delete a digest that never sent (409 otherwise: disable it instead)."""
    digests.delete(session, digests.get(session, digest_id))
    return Response(status_code=204)


@router.post("/{digest_id}/send", status_code=202, response_model=SendPublic)
def send_now(
    digest_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> SendPublic:
    """Start a send now; with nothing new to say it ends `skipped`, with the reason."""
    digest = digests.get(session, digest_id)
    now = services.clock.now()
    send = sends.start_send(
        session, services.settings, services.renderer, digest, scheduled_for=now, now=now
    )
    session.commit()
    services.sender.notify()
    assert send.id is not None
    found, counts = sends.progress(session, send.id)
    return SendPublic.model_validate(sends.public_fields(found, counts))


def _preview(session: Session, digest: Digest, services: Services) -> Preview:
    from mailer.content.selection import select_articles

    mailing_list = session.get(MailingList, digest.list_id)
    assert mailing_list is not None
    start, end = sends.window_for(services.settings, digest, services.clock.now())
    articles = select_articles(session, digest, start, end)
    try:
        mail = sends.render_digest(
            services.settings, services.renderer, digest, mailing_list, articles
        )
    except TemplateProblem as exc:
        raise InvalidInput("template", str(exc)) from exc
    sample = {
        "unsubscribe_url": f"{services.settings.public_url}/unsubscribe/preview",
        "name": "",
        "email": "reader@example.com",
    }
    return Preview(
        subject=fill(mail.subject, sample),
        html=fill(mail.html, sample),
        text=fill(mail.text, sample),
        articles=[ArticlePublic.model_validate(a, from_attributes=True) for a in articles],
    )


@router.get("/{digest_id}/preview", response_model=Preview)
def preview(
    digest_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> Preview:
    """The digest as it would go out now (HTML and text), without sending anything."""
    return _preview(session, digests.get(session, digest_id), services)


@router.post("/{digest_id}/test", response_model=TestSendResult)
async def test_send(
    digest_id: int, body: TestSend, services: ServicesDep, _editor: EditorDep
) -> TestSendResult:
    """Send the preview to the given addresses only (subject marked [TEST])."""
    addresses = [normalize_email(address) for address in body.addresses]

    def render() -> Preview:
        from mailer.db import session_scope

        with session_scope(services.engine) as session:
            return _preview(session, digests.get(session, digest_id), services)

    shown = await run_in_threadpool(render)
    transport = make_transport(services.settings.smtp, services.settings.maildir_path)
    result = TestSendResult(sent=[], failed={})
    mail = RenderedMail(subject=f"[TEST] {shown.subject}", html=shown.html, text=shown.text)
    try:
        for address in addresses:
            data = message.build(
                from_name=services.settings.mail.from_name,
                from_address=services.settings.mail.from_address,
                to_address=address,
                mail=mail,
                now=services.clock.now(),
                msgid_domain=services.sender.composer.msgid_domain,
            )
            try:
                await transport.send(services.settings.mail.from_address, address, data)
                result.sent.append(address)
            except DeliveryError as exc:
                result.failed[address] = exc.reply
    finally:
        await transport.close()
    return result
