"""/api/v1/digests: define digests, preview them, test-send them, send them now.

Each route parses its request, calls `mailer.delivery.digest_actions`, and presents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from mailer.api.deps import EditorDep
from mailer.content import digests
from mailer.content.schedules import describe, local_runs, next_runs, run_label
from mailer.delivery import digest_actions, sends
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import Digest, MailingList
from mailer.schemas import (
    ArticlePublic,
    DigestCreate,
    DigestPublic,
    DigestUpdate,
    Preview,
    SchedulePreview,
    SendPublic,
    TestSend,
    TestSendResult,
)
from mailer.services import Services

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


@router.post("", status_code=201, response_model=DigestPublic)
def create_digest(
    body: DigestCreate, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> DigestPublic:
    """Define a digest; `schedule` is a 5-field cron expression in `timezone`."""
    return public(session, digest_actions.define(session, services, body), services)


@router.get("", response_model=list[DigestPublic])
def list_digests(
    session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> list[DigestPublic]:
    return [public(session, d, services) for d in digests.all_digests(session)]


@router.get("/schedule", response_model=SchedulePreview)
def schedule_preview(
    services: ServicesDep,
    _editor: EditorDep,
    schedule: Annotated[str, Query(min_length=1, max_length=200, description="5-field cron")],
    timezone: Annotated[str, Query(max_length=64, description="IANA time zone")] = "UTC",
) -> SchedulePreview:
    """The next five run times of `schedule` in `timezone` (422 for a bad one)."""
    runs = local_runs(schedule, timezone, services.clock.now(), 5)
    return SchedulePreview(
        schedule=" ".join(schedule.split()),
        timezone=timezone,
        described=describe(schedule),
        next_runs=runs,
        labels=[run_label(run) for run in runs],
    )


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
    digest = digest_actions.update(session, services, digest_id, body)
    return public(session, digest, services)


@router.delete("/{digest_id}", status_code=204)
def delete_digest(digest_id: int, session: SessionDep, _editor: EditorDep) -> Response:
    """Delete a digest that never sent (409 otherwise: disable it instead)."""
    digest_actions.delete(session, digest_id)
    return Response(status_code=204)


@router.post("/{digest_id}/send", status_code=202, response_model=SendPublic)
def send_now(
    digest_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> SendPublic:
    """Start a send now; with nothing new to say it ends `skipped`, with the reason."""
    send, counts = digest_actions.send_now(session, services, digest_id)
    return SendPublic.model_validate(sends.public_fields(send, counts))


@router.get("/{digest_id}/preview", response_model=Preview)
def preview(
    digest_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> Preview:
    """The digest as it would go out now (HTML and text), without sending anything."""
    shown = digest_actions.preview(session, services, digests.get(session, digest_id))
    return Preview(
        subject=shown.mail.subject,
        html=shown.mail.html,
        text=shown.mail.text,
        articles=[ArticlePublic.model_validate(a, from_attributes=True) for a in shown.articles],
    )


@router.post("/{digest_id}/test", response_model=TestSendResult)
async def test_send(
    digest_id: int, body: TestSend, services: ServicesDep, _editor: EditorDep
) -> TestSendResult:
    """Send the preview to the given addresses only (subject marked [TEST])."""
    result = await digest_actions.test_send(services, digest_id, body)
    return TestSendResult(sent=result.sent, failed=result.failed)
