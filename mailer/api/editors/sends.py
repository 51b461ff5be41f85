"""/api/v1/sends: a send's status and progress, its messages and their attempts, and
pausing, resuming and cancelling it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import Session

from mailer.api.deps import EditorDep
from mailer.delivery import send_control, sends
from mailer.http.deps import MAX_ROW_ID, ServicesDep, SessionDep
from mailer.models import OutboxStatus
from mailer.schemas import SendMessagePublic, SendPublic
from mailer.services import Services

router = APIRouter(prefix="/sends", tags=["sends"])


@router.get("/{send_id}/messages", response_model=list[SendMessagePublic])
def list_messages(
    send_id: int,
    session: SessionDep,
    _editor: EditorDep,
    status: Annotated[OutboxStatus | None, Query(description="Only messages in this state")] = None,
    after: Annotated[
        int, Query(ge=0, le=MAX_ROW_ID, description="Messages with a larger id (paging)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[SendMessagePublic]:
    """The send's recipients in id order, each with the relay's reply to every attempt."""
    sends.progress(session, send_id)  # 404 for an unknown send
    return [
        SendMessagePublic.model_validate(fields)
        for fields in sends.messages(session, send_id, status, after, limit)
    ]


@router.get("/{send_id}", response_model=SendPublic)
def get_send(
    send_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> SendPublic:
    """Status (queued, sending, paused, done, cancelled, skipped), recipient counts, and
    the rate (messages per second since it started) with an ETA."""
    send, counts = sends.progress(session, send_id)
    return SendPublic.model_validate(sends.public_fields(send, counts, services.clock.now()))


def _changed(
    session: Session, services: Services, send_id: int, change: send_control.Change
) -> SendPublic:
    now = services.clock.now()
    send, counts = send_control.change(session, send_id, change, now, services.notify_sender)
    return SendPublic.model_validate(sends.public_fields(send, counts, now))


@router.post("/{send_id}/pause", response_model=SendPublic)
def pause_send(
    send_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> SendPublic:
    """Hold the send: no further messages go out until it is resumed (409 if it ended)."""
    return _changed(session, services, send_id, "pause")


@router.post("/{send_id}/resume", response_model=SendPublic)
def resume_send(
    send_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> SendPublic:
    return _changed(session, services, send_id, "resume")


@router.post("/{send_id}/cancel", response_model=SendPublic)
def cancel_send(
    send_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> SendPublic:
    """End the send; messages not yet sent are dropped."""
    return _changed(session, services, send_id, "cancel")
